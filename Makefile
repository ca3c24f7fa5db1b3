# The two commands: `make run` and `make test`. Each installs what it needs first.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
PORT   ?= 8080
export NUMBA_CACHE_DIR ?= $(CURDIR)/.numba-cache

.PHONY: install run stack demo images lock pictures test test-nojit chromium bench clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e ".[s3,web,queue,deploy,test]"
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

# The images of stack.yml and k8s/ (and the S3 and NATS stand-ins of the container tests), built
# offline from one Dockerfile; installs and starts Docker if it is missing (root). docs/operations.md.
images: install
	docker/images.sh

# Every picture of the README and docs/ made again by the current code (docs/pictures.py); the explorer's
# screenshot comes from the browser test, so Chromium too.
pictures: install chromium
	$(PY) docs/pictures.py

# constraints.txt: every package version, pyproject.toml's pins and what they pull in. After a pin changes.
lock: install
	$(PY) docker/lock.py

# Debian's Chromium for tests/web/test_browser.py, installed only when missing (needs root; without it the
# browser tests skip and say why). Playwright's own browser download is never used.
chromium:
	@test -x /usr/bin/chromium || (apt-get update && apt-get install -y chromium) || \
		echo "chromium could not be installed: the browser tests will be skipped"

# The whole suite, then the kernels' Python source once more with the JIT off.
test: install chromium
	docker/images.sh --if-possible  # the container tests use them (tests/ops/test_containers.py)
	$(PY) -m fractally.picture.warmup  # compile the kernels once into $(NUMBA_CACHE_DIR); the test processes load them
	$(PY) -m pytest -n 2 --dist loadscope -q
	$(MAKE) --no-print-directory test-nojit

test-nojit: install
	NUMBA_DISABLE_JIT=1 $(PY) -m pytest -q tests/picture/test_kernel.py tests/picture/test_tiling.py \
		-k "classic or window or seams or never_escapes or outside_radius"

bench: install
	$(PY) bench/kernel.py

clean:
	rm -rf $(VENV) .numba-cache out data build
