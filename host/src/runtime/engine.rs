//! The wasmtime engine shared by all task types: component model, fuel,
//! epoch interruption with one ticker thread, and the pooling allocator
//! sized for `max_sandboxes` live sandboxes of the configured modules
//! ([`Footprint`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use super::footprint::Footprint;

/// Builds the engine. `max_memory` is the largest memory limit of any task
/// type, which sizes the pool's memory slots; `footprint` is the largest
/// need of any module (see [`Footprint::max`]), which sizes the rest.
pub(crate) fn build(
    max_sandboxes: u32,
    max_memory: u64,
    footprint: &Footprint,
) -> wasmtime::Result<Engine> {
    let mut config = Config::new();
    config
        .wasm_component_model(true)
        .consume_fuel(true)
        .epoch_interruption(true)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool(
            max_sandboxes,
            max_memory,
            footprint,
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

/// Finished sandboxes whose memories, tables and stacks are returned to the
/// OS together, in one round of `madvise`.
const DECOMMIT_BATCH: u32 = 16;

fn pool(max_sandboxes: u32, max_memory: u64, footprint: &Footprint) -> PoolingAllocationConfig {
    let n = max_sandboxes;
    // Slots waiting in the decommit batch are not free yet: the pool holds
    // a batch's worth more than `max_sandboxes` live sandboxes need, or a
    // burst of short tasks finds it full.
    let slots = n.saturating_add(DECOMMIT_BATCH);
    let per_sandbox = |count: u32| count.max(1);
    let mut pool = PoolingAllocationConfig::default();
    // Every sandbox may be of the largest module: a Rust component is one
    // core instance with a memory and a few shims with tables, a Python one
    // a dozen core instances. The per-component maxima are the footprint
    // itself, so a module needing more than its bytes said is refused when
    // it is compiled, not when the pool runs dry under load.
    pool.total_component_instances(slots)
        .total_core_instances(slots.saturating_mul(per_sandbox(footprint.core_instances)))
        .total_memories(slots.saturating_mul(per_sandbox(footprint.memories)))
        .total_tables(slots.saturating_mul(per_sandbox(footprint.tables)))
        .total_stacks(slots)
        .max_core_instances_per_component(per_sandbox(footprint.core_instances))
        .max_memories_per_component(per_sandbox(footprint.memories))
        .max_tables_per_component(per_sandbox(footprint.tables))
        .max_memories_per_module(per_sandbox(footprint.memories_per_module))
        .max_tables_per_module(per_sandbox(footprint.tables_per_module))
        .table_elements(usize::try_from(footprint.largest_table.max(20_000)).unwrap_or(usize::MAX))
        .max_memory_size(usize::try_from(max_memory).unwrap_or(usize::MAX))
        // Keep a few slots warm so the next sandbox reuses their pages.
        .max_unused_warm_slots(n.min(32))
        // Reset a finished sandbox's memory in place instead of returning
        // its pages: with Linux's PAGEMAP_SCAN (6.7+) only the pages the
        // guest dirtied are found and memset, so the next sandbox takes no
        // page faults and no madvise forces TLB shootdowns across cores.
        // Without the ioctl, wasmtime falls back to madvise.
        .pagemap_scan(Enabled::Auto)
        // Keep resident (and reset in place) as much as the largest module
        // starts with, up to 16 MiB: an interpreter's heap image is touched
        // on every run, and faulting it in again per task would cost more
        // than the handler.
        .linear_memory_keep_resident(keep_resident(footprint))
        .table_keep_resident(256 << 10)
        // What is returned is returned in batches: one round of madvise per
        // 16 sandboxes instead of one each.
        .decommit_batch_size(DECOMMIT_BATCH as usize);
    pool
}

/// Bytes of each memory slot kept resident between sandboxes.
fn keep_resident(footprint: &Footprint) -> usize {
    let wanted = footprint.largest_memory.clamp(4 << 20, 16 << 20);
    usize::try_from(wanted).unwrap_or(16 << 20)
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
