//! The smallest handler: does nothing and succeeds. The benchmarks use it to
//! measure what the sandbox itself costs per task.

fn noop(_task: wasq_guest::Task) -> Result<(), wasq_guest::TaskError> {
    Ok(())
}

wasq_guest::export_handler!(noop);
