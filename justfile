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

# Build the images (FROM scratch + static binary); PROFILE=dev reuses the test build
images:
    @scripts/images.sh

# Build the images, start 5 sticky-svc + the gateway on port 80 (GATEWAY_PORT), wait until healthy
up:
    @scripts/stack.sh preflight
    @scripts/images.sh
    @scripts/stack.sh up

# Stop and remove every container and network of the stack
down:
    @scripts/stack.sh down

# Run N sticky-svc replicas (0 allowed); the gateway follows within a second
scale N:
    @scripts/stack.sh scale {{N}}

# The article's curl: which replica served USER, and how long it took
ping USER="ricky":
    @scripts/stack.sh ping "{{USER}}"

# goose inside the compose network (ARGS replace --host http://gateway:8080 --users 100 --run-time 20s)
load *ARGS:
    @scripts/stack.sh load {{ARGS}}

# Follow the logs of every container
logs:
    @scripts/stack.sh logs

# The same stack without Docker: 5 sticky-svc + gateway as local processes (Ctrl-C stops all)
local:
    @scripts/local.sh

# Docker end to end: images from the dev build, testcontainers tests, then the compose run
e2e:
    @scripts/e2e.sh
