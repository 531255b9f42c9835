# One command per task. Every target installs what it needs into .venv.
.PHONY: demo test dev bench bench-quick lint clean

demo:            ## install, then run the example graph
	scripts/demo.sh

test:            ## install everything, then run the whole test suite
	scripts/test.sh

dev:             ## editable install for development (rebuilds the extension)
	scripts/bootstrap.sh test
	.venv/bin/python -m pip install --quiet -e ".[test]"

bench:           ## the benchmark suite: one table, JSON in bench-results/
	scripts/bootstrap.sh postgres
	HEADRACE_BENCH_POSTGRES="$$(scripts/postgres.sh start)" HEADRACE_BENCH_KAFKA="$$(scripts/kafka.sh start)" \
	  .venv/bin/python -m benches; status=$$?; scripts/postgres.sh stop; scripts/kafka.sh stop; exit $$status

bench-quick:     ## a small, fast run of the same suite
	scripts/bootstrap.sh
	.venv/bin/python -m benches --quick

lint:            ## clippy on the Rust crates, mypy --strict on the package
	cargo clippy --workspace --all-targets -- -D warnings
	scripts/bootstrap.sh test
	.venv/bin/python -m mypy
	.venv/bin/python -m mypy.stubtest headrace._core

clean:
	rm -rf .venv target bench-results .pytest_cache .mypy_cache .hypothesis
