# The two commands: `make run` and `make test`. Each installs what it needs first.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
PORT   ?= 8080
export NUMBA_CACHE_DIR ?= $(CURDIR)/.numba-cache

.PHONY: install run stack demo test test-nojit chromium bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[s3,web,queue,deploy,test]"
	touch $(STAMP)

install: $(STAMP)

# The embedded service on 127.0.0.1:$(PORT): one process, local-folder store under ./data.
run: install
	$(VENV)/bin/fractally serve --host 127.0.0.1 --port $(PORT)

# The cluster's topology on one machine: api, render_tile, assemble and an S3 server as processes.
stack: install
	$(VENV)/bin/fractally stack --port $(PORT)

# One render with the CLI, all cores, progress bar; prints the file's path.
demo: install
	$(VENV)/bin/fractally render --c=-0.8,0.156 --width 3840 --height 2160 --max-iter 1000 -o out/julia.png

# Debian's Chromium for tests/test_browser.py, installed only when missing (needs root; without it the
# browser tests skip and say why). Playwright's own browser download is never used.
chromium:
	@test -x /usr/bin/chromium || (apt-get update && apt-get install -y chromium) || \
		echo "chromium could not be installed: the browser tests will be skipped"

# The whole suite, then the kernels' Python source once more with the JIT off.
test: install chromium
	$(PY) -m fractally.warmup  # compile the kernels once into $(NUMBA_CACHE_DIR); the test processes load them
	$(PY) -m pytest -n 2 --dist loadscope -q
	$(MAKE) --no-print-directory test-nojit

test-nojit: install
	NUMBA_DISABLE_JIT=1 $(PY) -m pytest -q tests/test_kernel.py tests/test_tiling.py \
		-k "classic or window or seams or never_escapes or outside_radius"

bench: install
	$(PY) bench/kernel.py

clean:
	rm -rf $(VENV) .numba-cache out data
