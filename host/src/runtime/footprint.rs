//! What one sandbox of a component takes from the instance pool, read from
//! the component's bytes before anything is compiled: how many core
//! instances, memories and tables an instantiation creates, how large the
//! largest table is, and how much linear memory exists before the handler
//! runs (its static data, stack and, for Python and JavaScript, the
//! interpreter's pre-initialised heap).
//!
//! The engine's pool is sized from the footprints of the configured modules
//! ([`Footprint::max`]), so a Python component with ten core instances and
//! a 13 MiB memory image gets the room it needs while a Rust one keeps the
//! pool small. The walk follows the component's index spaces: each core
//! `instantiate` adds the instantiated module's memories and tables, each
//! component `instantiate` adds that component's footprint; modules and
//! components that arrive as imports add nothing (wasmtime cannot know
//! them either).
//!
//! ```
//! use wasq::runtime::Footprint;
//!
//! // A component with one module (one memory of 2 pages) instantiated twice.
//! let wasm = b"\0asm\x0d\0\x01\0\
//!     \x01\x0d\0asm\x01\0\0\0\x05\x03\x01\x00\x02\
//!     \x02\x07\x02\x00\x00\x00\x00\x00\x00";
//! let footprint = Footprint::of(wasm).unwrap();
//! assert_eq!(footprint.core_instances, 2);
//! assert_eq!(footprint.memories, 2);
//! assert_eq!(footprint.initial_memory, 4 * 65536);
//! ```

use serde::Serialize;
use wasmparser::{
    ComponentAlias, ComponentExternalKind, ComponentInstance, ComponentOuterAliasKind,
    ComponentTypeRef, Encoding, Instance, Parser, Payload,
};

/// What one instantiation of a component allocates.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Footprint {
    /// Core module instances.
    pub core_instances: u32,
    /// Linear memories defined by those instances (imported ones are
    /// shared, not allocated).
    pub memories: u32,
    /// Tables defined by those instances.
    pub tables: u32,
    /// Bytes of linear memory over all memories at instantiation.
    pub initial_memory: u64,
    /// The largest initial size of one memory, in bytes.
    pub largest_memory: u64,
    /// The largest initial size of one table, in elements.
    pub largest_table: u64,
    /// The most memories one core module defines.
    pub memories_per_module: u32,
    /// The most tables one core module defines.
    pub tables_per_module: u32,
}

impl Footprint {
    /// Reads the footprint of a component (or a core module) from its
    /// bytes. Fails only on bytes wasmparser cannot read.
    pub fn of(wasm: &[u8]) -> Result<Self, wasmparser::BinaryReaderError> {
        let mut stack: Vec<Frame> = Vec::new();
        for payload in Parser::new(0).parse_all(wasm) {
            match payload? {
                Payload::Version { encoding, .. } => stack.push(match encoding {
                    Encoding::Module => Frame::Module(Footprint {
                        core_instances: 1,
                        ..Footprint::default()
                    }),
                    Encoding::Component => Frame::Component(Scope::default()),
                }),
                Payload::MemorySection(reader) => {
                    if let Some(Frame::Module(module)) = stack.last_mut() {
                        for memory in reader {
                            let memory = memory?;
                            let bytes =
                                memory.initial.saturating_mul(u64::from(memory.page_size()));
                            module.memories += 1;
                            module.initial_memory = module.initial_memory.saturating_add(bytes);
                            module.largest_memory = module.largest_memory.max(bytes);
                        }
                        module.memories_per_module = module.memories;
                    }
                }
                Payload::TableSection(reader) => {
                    if let Some(Frame::Module(module)) = stack.last_mut() {
                        for table in reader {
                            module.tables += 1;
                            module.largest_table = module.largest_table.max(table?.ty.initial);
                        }
                        module.tables_per_module = module.tables;
                    }
                }
                Payload::InstanceSection(reader) => {
                    if let Some(Frame::Component(scope)) = stack.last_mut() {
                        for instance in reader {
                            if let Instance::Instantiate { module_index, .. } = instance? {
                                let module = scope.module(module_index);
                                scope.total.add(&module);
                            }
                        }
                    }
                }
                Payload::ComponentInstanceSection(reader) => {
                    if let Some(Frame::Component(scope)) = stack.last_mut() {
                        for instance in reader {
                            if let ComponentInstance::Instantiate {
                                component_index, ..
                            } = instance?
                            {
                                let component = scope.component(component_index);
                                scope.total.add(&component);
                            }
                        }
                    }
                }
                Payload::ComponentAliasSection(reader) => {
                    for alias in reader {
                        let alias = alias?;
                        let depth = stack.len();
                        let outer = |count: u32, pick: fn(&Scope) -> &Vec<Footprint>, index| {
                            let at = depth.checked_sub(1 + count as usize)?;
                            match &stack[at] {
                                Frame::Component(scope) => pick(scope).get(index as usize).copied(),
                                Frame::Module(_) => None,
                            }
                        };
                        let (modules, components) = match alias {
                            ComponentAlias::Outer {
                                kind: ComponentOuterAliasKind::CoreModule,
                                count,
                                index,
                            } => (Some(outer(count, |s| &s.modules, index)), None),
                            ComponentAlias::Outer {
                                kind: ComponentOuterAliasKind::Component,
                                count,
                                index,
                            } => (None, Some(outer(count, |s| &s.components, index))),
                            ComponentAlias::InstanceExport { kind, .. } => match kind {
                                ComponentExternalKind::Module => (Some(None), None),
                                ComponentExternalKind::Component => (None, Some(None)),
                                _ => (None, None),
                            },
                            _ => (None, None),
                        };
                        if let Some(Frame::Component(scope)) = stack.last_mut() {
                            if let Some(module) = modules {
                                scope.modules.push(module.unwrap_or_default());
                            }
                            if let Some(component) = components {
                                scope.components.push(component.unwrap_or_default());
                            }
                        }
                    }
                }
                Payload::ComponentImportSection(reader) => {
                    if let Some(Frame::Component(scope)) = stack.last_mut() {
                        for import in reader {
                            match import?.ty {
                                ComponentTypeRef::Module(_) => {
                                    scope.modules.push(Footprint::default())
                                }
                                ComponentTypeRef::Component(_) => {
                                    scope.components.push(Footprint::default())
                                }
                                _ => {}
                            }
                        }
                    }
                }
                Payload::End(_) => {
                    let done = match stack.pop() {
                        Some(Frame::Module(module)) => Done::Module(module),
                        Some(Frame::Component(scope)) => Done::Component(scope.total),
                        None => continue,
                    };
                    match (stack.last_mut(), done) {
                        (Some(Frame::Component(scope)), Done::Module(module)) => {
                            scope.modules.push(module)
                        }
                        (Some(Frame::Component(scope)), Done::Component(component)) => {
                            scope.components.push(component)
                        }
                        (None, Done::Module(f) | Done::Component(f)) => return Ok(f),
                        (Some(Frame::Module(_)), _) => {}
                    }
                }
                _ => {}
            }
        }
        Ok(Footprint::default())
    }

    /// The footprint that fits every one of `footprints` (the largest of
    /// each figure), for sizing one pool shared by several task types.
    pub fn max<'a>(footprints: impl IntoIterator<Item = &'a Footprint>) -> Footprint {
        footprints
            .into_iter()
            .fold(Footprint::default(), |a, b| Footprint {
                core_instances: a.core_instances.max(b.core_instances),
                memories: a.memories.max(b.memories),
                tables: a.tables.max(b.tables),
                initial_memory: a.initial_memory.max(b.initial_memory),
                largest_memory: a.largest_memory.max(b.largest_memory),
                largest_table: a.largest_table.max(b.largest_table),
                memories_per_module: a.memories_per_module.max(b.memories_per_module),
                tables_per_module: a.tables_per_module.max(b.tables_per_module),
            })
    }

    /// Adds what instantiating `other` allocates.
    fn add(&mut self, other: &Footprint) {
        self.core_instances = self.core_instances.saturating_add(other.core_instances);
        self.memories = self.memories.saturating_add(other.memories);
        self.tables = self.tables.saturating_add(other.tables);
        self.initial_memory = self.initial_memory.saturating_add(other.initial_memory);
        self.largest_memory = self.largest_memory.max(other.largest_memory);
        self.largest_table = self.largest_table.max(other.largest_table);
        self.memories_per_module = self.memories_per_module.max(other.memories_per_module);
        self.tables_per_module = self.tables_per_module.max(other.tables_per_module);
    }
}

/// A module or component being read.
enum Frame {
    Module(Footprint),
    Component(Scope),
}

enum Done {
    Module(Footprint),
    Component(Footprint),
}

/// A component's index spaces of modules and components (each entry the
/// footprint of instantiating it) and what its own instantiations add up to.
#[derive(Default)]
struct Scope {
    modules: Vec<Footprint>,
    components: Vec<Footprint>,
    total: Footprint,
}

impl Scope {
    fn module(&self, index: u32) -> Footprint {
        self.modules
            .get(index as usize)
            .copied()
            .unwrap_or_default()
    }

    fn component(&self, index: u32) -> Footprint {
        self.components
            .get(index as usize)
            .copied()
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::Footprint;

    /// A component: module 0 (one memory, 1 page; one table of 3),
    /// module 1 (no memory), a nested component instantiating module 0
    /// through an outer alias; module 0 and 1 instantiated once each, the
    /// nested component twice.
    fn sample() -> Vec<u8> {
        fn section(id: u8, body: &[u8]) -> Vec<u8> {
            let mut out = vec![id, body.len() as u8];
            out.extend_from_slice(body);
            out
        }
        let header_c = b"\0asm\x0d\0\x01\0".to_vec();
        let header_m = b"\0asm\x01\0\0\0".to_vec();
        // Module 0: table section (id 4) one funcref table min 3; memory
        // section (id 5) one memory min 1.
        let mut m0 = header_m.clone();
        m0.extend(section(4, &[1, 0x70, 0, 3]));
        m0.extend(section(5, &[1, 0, 1]));
        let m1 = header_m;
        // Nested component: alias outer 1 core module 0 (section 6:
        // count 1, sort 0x00 0x11, outer 0x02, count 1, index 0), then
        // instantiate it (core instance section 2: instantiate module 0,
        // no args).
        let mut inner = header_c.clone();
        inner.extend(section(6, &[1, 0x00, 0x11, 0x02, 1, 0]));
        inner.extend(section(2, &[1, 0, 0, 0]));
        let mut c = header_c;
        c.extend(section(1, &m0));
        c.extend(section(1, &m1));
        c.extend(section(4, &inner));
        // Core instances: module 0 and module 1.
        c.extend(section(2, &[2, 0, 0, 0, 0, 1, 0]));
        // Component instances (section 5): component 0 twice, no args.
        c.extend(section(5, &[2, 0, 0, 0, 0, 0, 0]));
        c
    }

    #[test]
    fn nested_instantiations_add_up() {
        let f = Footprint::of(&sample()).unwrap();
        assert_eq!(f.core_instances, 4, "{f:?}");
        assert_eq!(f.memories, 3, "{f:?}");
        assert_eq!(f.tables, 3, "{f:?}");
        assert_eq!(f.initial_memory, 3 * 65536, "{f:?}");
        assert_eq!(f.largest_memory, 65536);
        assert_eq!(f.largest_table, 3);
        assert_eq!(f.memories_per_module, 1);
    }

    #[test]
    fn max_takes_each_figure_apart() {
        let a = Footprint {
            core_instances: 10,
            initial_memory: 5,
            ..Default::default()
        };
        let b = Footprint {
            memories: 3,
            initial_memory: 9,
            ..Default::default()
        };
        let m = Footprint::max([&a, &b]);
        assert_eq!((m.core_instances, m.memories, m.initial_memory), (10, 3, 9));
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(Footprint::of(b"\0asm\x0d\0\x01\0\x01\xff").is_err());
    }
}
