//! A plain WASI command: a valid component that exports `wasi:cli/run`
//! but not `handle`, so the host must refuse it at start-up.

fn main() {
    println!("I am not a task handler");
}
