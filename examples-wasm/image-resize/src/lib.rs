//! `images:resize`: makes a thumbnail of an image in a granted directory.
//!
//! Payload: `{"src": "/images/cat.png", "width": 128, "height": 96}`.
//! `src` must lie in a directory granted to the task type (`dirs` in
//! `wasq.toml`); the sandbox sees nothing else. With both `width` and
//! `height` the thumbnail has exactly that size; with only one (or neither,
//! 128) it fits in a square of that side, keeping the aspect ratio. It is
//! written next to the source as `<name>.thumb.<ext>` unless `dst` says
//! otherwise. The result is JSON: `{"dst": ..., "width": ..., "height": ...}`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use wasq_guest::{Json, Task, TaskError, info};

#[derive(Deserialize)]
struct Resize {
    src: String,
    width: Option<u32>,
    height: Option<u32>,
    dst: Option<String>,
}

#[derive(Serialize)]
struct Thumbnail {
    dst: String,
    width: u32,
    height: u32,
}

fn resize(task: Task) -> Result<Json<Thumbnail>, TaskError> {
    let req: Resize = task.json()?;
    // A missing or unreadable source will not appear by retrying.
    let img = image::open(&req.src)
        .map_err(|e| TaskError::skip_retry(format!("cannot open {}: {e}", req.src)))?;
    wasq_guest::set_progress(30);
    let thumb = match (req.width, req.height) {
        (Some(w), Some(h)) => img.thumbnail_exact(w, h),
        (w, h) => {
            let side = w.or(h).unwrap_or(128);
            img.thumbnail(side, side)
        }
    };
    wasq_guest::set_progress(80);
    let dst = req
        .dst
        .map(PathBuf::from)
        .unwrap_or_else(|| thumb_path(Path::new(&req.src)));
    thumb
        .save(&dst)
        .map_err(|e| TaskError::retry(format!("cannot write {}: {e}", dst.display())))?;
    info!(
        format!(
            "resized {} ({}x{}) to {}",
            req.src,
            img.width(),
            img.height(),
            dst.display()
        ),
        width = thumb.width(),
        height = thumb.height()
    );
    Ok(Json(Thumbnail {
        dst: dst.display().to_string(),
        width: thumb.width(),
        height: thumb.height(),
    }))
}

fn thumb_path(src: &Path) -> PathBuf {
    let stem = src.file_stem().and_then(|s| s.to_str()).unwrap_or("image");
    let ext = src.extension().and_then(|s| s.to_str()).unwrap_or("png");
    src.with_file_name(format!("{stem}.thumb.{ext}"))
}

wasq_guest::export_handler!(resize);
