# The two commands of the README.
.PHONY: run test build

# Set up, build, and run the server on the shipped configuration (conf/). `cargo run` finds
# the binary wherever CARGO_TARGET_DIR puts it, and on Unix it replaces itself with the
# server, so Ctrl-C and signals reach the server directly.
run:
	scripts/setup.sh
	exec cargo run --release --bin kefu-edge -- -c conf/

# The whole test suite: formatting, lints, unit and integration tests (real binary, real
# sockets, real Redis and a Redis Cluster), and the README's curl examples (tests/smoke.sh, run by tests/smoke.rs).
test:
	scripts/setup.sh --test
	cargo fmt --check
	cargo clippy --all-targets -- -D warnings
	cargo test

build:
	scripts/setup.sh
	cargo build --release --bin kefu-edge --example ping
