//! The wasmtime engine shared by all task types: component model, fuel,
//! epoch interruption with one ticker thread, and the pooling allocator
//! sized for `max_sandboxes` live sandboxes.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// Builds the engine. `max_memory` is the largest memory limit of any task
/// type, which sizes the pool's memory slots.
pub(crate) fn build(max_sandboxes: u32, max_memory: u64) -> wasmtime::Result<Engine> {
    let mut config = Config::new();
    config
        .wasm_component_model(true)
        .consume_fuel(true)
        .epoch_interruption(true)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool(
            max_sandboxes,
            max_memory,
        )));
    Engine::new(&config)
}

/// A default engine (on-demand allocator, no fuel, no epochs), as a first
/// embedding would make it; only for the benchmark's naive baseline.
pub(crate) fn build_on_demand() -> wasmtime::Result<Engine> {
    let mut config = Config::new();
    config.wasm_component_model(true);
    Engine::new(&config)
}

fn pool(max_sandboxes: u32, max_memory: u64) -> PoolingAllocationConfig {
    let n = max_sandboxes;
    let mut pool = PoolingAllocationConfig::default();
    // A Rust component is one core module with a memory plus small shim
    // modules with tables; leave room for a few memories per sandbox.
    pool.total_component_instances(n)
        .total_core_instances(n.saturating_mul(8))
        .total_memories(n.saturating_mul(2))
        .total_tables(n.saturating_mul(4))
        .total_stacks(n)
        .max_memory_size(usize::try_from(max_memory).unwrap_or(usize::MAX))
        // Keep a few slots warm so the next sandbox reuses their pages.
        .max_unused_warm_slots(n.min(32))
        // Reset a finished sandbox's memory in place instead of returning
        // its pages: with Linux's PAGEMAP_SCAN (6.7+) only the pages the
        // guest dirtied are found and memset, so the next sandbox takes no
        // page faults and no madvise forces TLB shootdowns across cores.
        // Without the ioctl, wasmtime falls back to madvise.
        .pagemap_scan(Enabled::Auto)
        .linear_memory_keep_resident(4 << 20)
        .table_keep_resident(256 << 10)
        // What is returned is returned in batches: one round of madvise per
        // 16 sandboxes instead of one each.
        .decommit_batch_size(16);
    pool
}

/// Increments the engine's epoch on a fixed tick until dropped, so running
/// guests check their deadline and yield to the async executor once a tick.
pub(crate) struct EpochTicker {
    stop: Arc<AtomicBool>,
}

impl EpochTicker {
    pub fn start(engine: Engine, tick: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        std::thread::Builder::new()
            .name("wasq-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(tick);
                    engine.increment_epoch();
                }
            })
            .expect("spawning the epoch ticker thread");
        Self { stop }
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
