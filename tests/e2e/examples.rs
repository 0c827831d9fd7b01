//! The seed tutorial's three handlers through the library API.

use wasq::runtime::{Invocation, LogSource, Outcome};
use wasq_tests::TestConfig;

fn config(images: &std::path::Path) -> TestConfig {
    TestConfig::new(&wasq_tests::tutorial_task_types(images))
}

fn result_text(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Success { result } => String::from_utf8(result.clone()).unwrap(),
        Outcome::Failed { failure } => panic!("task failed: {failure}"),
    }
}

#[tokio::test]
async fn email_logs_sender_and_recipient() {
    let images = tempfile::tempdir().unwrap();
    let runtime = config(images.path()).runtime();
    let run = runtime
        .execute(Invocation::new(
            "notifications:email",
            br#"{"to": 42, "from": 7}"#.to_vec(),
        ))
        .await;
    assert_eq!(result_text(&run.outcome), "email sent from 7 to 42");
    assert_eq!(run.logs.len(), 1, "{:?}", run.logs);
    assert_eq!(run.logs[0].message, "sending email from user 7 to user 42");
    assert_eq!(run.logs[0].source, LogSource::Log);
    assert!(run.logs[0].fields.contains(&("to".into(), "42".into())));
    assert!(run.fuel_consumed > 0);
}

#[tokio::test]
async fn webhook_logs_its_data() {
    let images = tempfile::tempdir().unwrap();
    let runtime = config(images.path()).runtime();
    let run = runtime
        .execute(Invocation::new(
            "webhooks:sync",
            br#"{"data": 12345}"#.to_vec(),
        ))
        .await;
    assert_eq!(result_text(&run.outcome), "webhook 12345 processed");
    assert_eq!(run.logs[0].message, "processing webhook with data 12345");
}

#[tokio::test]
async fn image_resize_writes_a_real_thumbnail_of_the_requested_size() {
    let images = tempfile::tempdir().unwrap();
    write_png(&images.path().join("photo.png"), 200, 150);
    let runtime = config(images.path()).runtime();

    let run = runtime
        .execute(Invocation::new(
            "images:resize",
            br#"{"src": "/images/photo.png", "width": 40, "height": 30}"#.to_vec(),
        ))
        .await;
    let result: serde_json::Value = serde_json::from_str(&result_text(&run.outcome)).unwrap();
    assert_eq!(result["dst"], "/images/photo.thumb.png");
    assert_eq!(png_size(&images.path().join("photo.thumb.png")), (40, 30));
    assert_eq!(run.progress, Some(80));

    // One side only: fits a square, keeping the 4:3 aspect ratio.
    let run = runtime
        .execute(Invocation::new(
            "images:resize",
            br#"{"src": "/images/photo.png", "width": 100, "dst": "/images/small.png"}"#.to_vec(),
        ))
        .await;
    result_text(&run.outcome);
    assert_eq!(png_size(&images.path().join("small.png")), (100, 75));
}

#[tokio::test]
async fn image_resize_cannot_reach_outside_its_directory() {
    let images = tempfile::tempdir().unwrap();
    let runtime = config(images.path()).runtime();
    let run = runtime
        .execute(Invocation::new(
            "images:resize",
            br#"{"src": "/etc/hostname"}"#.to_vec(),
        ))
        .await;
    let failure = run.outcome.failure().expect("must fail").to_string();
    assert!(failure.contains("cannot open /etc/hostname"), "{failure}");
}

/// A PNG with a gradient, written with the `png` crate (not by the guest).
fn write_png(path: &std::path::Path, width: u32, height: u32) {
    let file = std::fs::File::create(path).unwrap();
    let mut encoder = png::Encoder::new(std::io::BufWriter::new(file), width, height);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().unwrap();
    let data: Vec<u8> = (0..width * height)
        .flat_map(|i| [(i % width) as u8, (i / width) as u8, 128])
        .collect();
    writer.write_image_data(&data).unwrap();
}

fn png_size(path: &std::path::Path) -> (u32, u32) {
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).unwrap()));
    let reader = decoder.read_info().unwrap();
    let info = reader.info();
    (info.width, info.height)
}
