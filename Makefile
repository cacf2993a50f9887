# sft_tf: `make demo` and `make test` are the two commands a new machine needs.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# Where the demo looks for the Fashion-MNIST IDX files (Debian package, then the keras.datasets cache).
FMNIST_DEB   := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
FMNIST_KERAS := $(HOME)/.keras/datasets/fashion-mnist/train-images-idx3-ubyte.gz
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: install data demo test test-all lint format docs clean

$(STAMP): pyproject.toml setup.cfg
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

install: $(STAMP)

# The demo data: Debian's dataset-fashion-mnist when we are root with apt, else the keras.datasets
# download (needs the network once; it caches in ~/.keras/datasets).
data: install
	@if [ -f $(FMNIST_DEB) ] || [ -f $(FMNIST_KERAS) ]; then \
	  echo "Fashion-MNIST: present"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  apt-get install -y -q dataset-fashion-mnist || \
	    (apt-get update -q && apt-get install -y -q dataset-fashion-mnist); \
	else \
	  $(BIN)/python -c "import keras; keras.datasets.fashion_mnist.load_data()"; \
	fi

demo: data
	$(BIN)/sft-tf demo --config=configs/fashion_mnist.py --workdir=runs/demo

# The default suite: about 5 minutes on 2 cores, two pytest workers (pytest-xdist). Work
# stealing: an idle worker takes queued tests from the busy one (with the default `load`
# scheduling one worker was measured idle for the last ~170 s of a run).
test: data
	$(BIN)/pytest -n 2 --dist worksteal -m "not slow"

# Everything, slow tests included: what CI runs. Tests of one module share a worker, so a
# module's trained fixtures are built once.
test-all: data
	$(BIN)/pytest -n 2 --dist loadscope

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# The docs site (mkdocs-material) into site/: the docs extra installed into the venv, then a strict
# build, so a broken link or anchor fails. The CLI and config reference pages are generated from
# the code by docs/hooks/reference.py. Offline: no fonts or plugins fetch anything.
DOCS_STAMP := $(VENV)/.installed-docs

$(DOCS_STAMP): $(STAMP)
	$(BIN)/pip install --quiet -e '.[docs]'
	touch $@

docs: $(DOCS_STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

clean:
	rm -rf $(VENV) runs site .pytest_cache .ruff_cache *.egg-info
