//! Host-side tests of the Rampart component live in `tests/`: they load the built
//! component (`RAMPART_COMPONENT`, built by `cargo xtask test`) with wasmtime and check
//! it against the core over the shared vectors.
