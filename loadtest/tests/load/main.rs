//! The scenarios against an in-process stack on loopback: several sticky-svc replicas behind
//! a small test proxy that is sticky (rendezvous hash of `x-user`) or, on purpose, not; and
//! the same replicas behind the real gateway (`gateway.rs`), sticky and, on purpose, not, and
//! over HTTPS with the project's own Istio YAML (`https.rs`).
//!
//! One test binary, so goose (which keeps some process-wide state) runs one load at a time:
//! each test holds [`stack::exclusive`] while it loads.

mod binary;
mod canary;
mod chaos;
mod gateway;
/// The gateway crate's own test stack (Istio YAML for static replicas, a running gateway).
#[path = "../../../gateway/tests/support/stack.rs"]
mod gateway_stack;
mod https;
mod proxy;
mod scenarios;
mod stack;
