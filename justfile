# Every command a person or CI runs. `just --list` shows them.

set shell := ["bash", "-euo", "pipefail", "-c"]

# List the recipes
default:
    @just --list

# The one test command: format check, lints, then every test of the workspace
test: fmt-check lint
    cargo test --workspace --all-targets
    cargo test --workspace --doc

# Format the code
fmt:
    cargo fmt --all

# Fail when the code is not formatted
fmt-check:
    cargo fmt --all -- --check

# Clippy on every target, warnings are errors
lint:
    cargo clippy --workspace --all-targets -- -D warnings

# Run sticky-svc alone; flags pass through: just run-svc --first-call-cost 1s
[positional-arguments]
run-svc *args:
    cargo run -p sticky-svc -- "$@"

# Warm /ping throughput and p99 of sticky-svc against nginx (installs wrk and nginx via apt)
bench-svc:
    bench/svc-vs-nginx.sh
