//! Host-side bindings of `wit/wasq.wit`, generated once here; the rest of the
//! host uses the types re-exported from this module.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "wasq:task/handler@0.1.0",
    exports: { default: async },
});
