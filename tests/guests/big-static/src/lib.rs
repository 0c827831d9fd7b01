//! A handler whose static data alone (a 48 MiB zeroed buffer) needs more
//! linear memory at start than a small sandbox has: the host must refuse it
//! at load and say which setting to change.

use std::hint::black_box;
use std::sync::Mutex;

use wasq_guest::{Task, TaskError};

static BUFFER: Mutex<[u8; 48 << 20]> = Mutex::new([0; 48 << 20]);

fn touch(task: Task) -> Result<String, TaskError> {
    let mut buffer = BUFFER.lock().map_err(|_| TaskError::retry("poisoned"))?;
    buffer[task.payload().len()] = 1;
    Ok(format!("{}", black_box(buffer[0])))
}

wasq_guest::export_handler!(touch);
