# The two commands a new user runs: `make demo` (the main job) and `make test` (the test suite).
# Each creates or reuses the virtual environment .venv and installs what it needs first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.resbone-installed
TIMM_VERSION := 1.0.31

.PHONY: demo demo-classify demo-reid test test-fast bench install clean

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch/torchvision: pinned builds that pip takes from this machine's disk (no big download)
	$(PY) -m pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install --quiet -e '.[test]'
	# reference projects the tests compare against; with their dependencies they would pull opencv, scipy and
	# an old torch, so only their own code is installed (the tests import just their model files)
	$(PY) -m pip install --quiet --no-deps mmengine==0.10.7 mmcv-lite==2.1.0 mmdet==3.3.0 mmpretrain==1.2.0 \
		fastreid==1.4.0
	# timm's own model tests, run on resbone's models by tests/timm_suite: tests/ from the sdist of the timm
	# version pyproject pins, unpacked in the venv (the tests then need no network)
	rm -rf $(VENV)/timm-sdist
	$(PY) -m pip download --quiet --no-deps --no-binary :all: timm==$(TIMM_VERSION) -d $(VENV)/timm-sdist
	tar -xzf $(VENV)/timm-sdist/timm-$(TIMM_VERSION).tar.gz -C $(VENV)/timm-sdist timm-$(TIMM_VERSION)/tests
	touch $(STAMP)

# The main job: FCOS (R-18-FPN, from scratch) trained on the synthetic shapes set (generated on first
# use under ./datasets), then COCO AP on shapes_val and a grid of drawn validation images; about 7 minutes on
# 2 CPU cores (README: the demo). One intra-op thread: the demo's ops are small, so a second thread gains
# a quarter at best (spinning, on an idle machine) and loses 2-3.5x as soon as another process wants a core
# (README: threads).
demo: $(STAMP)
	$(VENV)/bin/resbone summary resnet18
	$(VENV)/bin/resbone train --threads 1 fcos/shapes_R_18_FPN OUTPUT_DIR demo_output --overwrite
	$(VENV)/bin/resbone predict fcos/shapes_R_18_FPN --weights demo_output/model_final.pth \
		--grid 8 --out demo_output/predictions

# The second demo: resnet18 trained from scratch on the generated textures set (6 classes that need shape AND
# texture, 64 px), then Acc@1 / Acc@5 with a confusion matrix and a grid of validation images with their top-3
# classes; 6 min 28 s on the shared 2-core machine with one thread, val Acc@1 96.9% (docs/classification.md).
demo-classify: $(STAMP)
	$(VENV)/bin/resbone data textures --out datasets/textures
	$(VENV)/bin/resbone train --threads 1 classification/textures_resnet18 \
		OUTPUT_DIR demo_classify_output --overwrite
	$(VENV)/bin/resbone eval classification/textures_resnet18 \
		--weights demo_classify_output/model_final.pth
	$(VENV)/bin/resbone predict classification/textures_resnet18 \
		--weights demo_classify_output/model_final.pth --grid 12 --out demo_classify_output/predictions

# The re-id demo: the BNNeck baseline (ID + triplet loss on P x K batches) on a narrow resnet18 trained from scratch
# on the generated re-id set (64 training identities; 32 held-out identities ranked: 64 queries, 380 gallery
# images), then rank-1/5/10 and mAP and the ranked lists of 8 queries (demo_reid_output/pictures); docs/reid.md.
demo-reid: $(STAMP)
	$(VENV)/bin/resbone data reid --out datasets/reid
	$(VENV)/bin/resbone train --threads 1 reid/synthetic_resnet18 OUTPUT_DIR demo_reid_output --overwrite
	$(VENV)/bin/resbone eval --threads 1 reid/synthetic_resnet18 --weights demo_reid_output/model_final.pth \
		--out demo_reid_output/pictures

test: $(STAMP)
	$(VENV)/bin/ruff check .
	OMP_NUM_THREADS=1 $(PY) -m pytest -q -n 2 --durations=15

test-fast: $(STAMP)
	$(VENV)/bin/ruff check .
	OMP_NUM_THREADS=1 $(PY) -m pytest -q -n 2 -m "not slow"

# Side-by-side speed against torchvision (ratios, GFLOP/s, top ops); `python -m bench.<name> --help` for the
# options; bench/gpu.sh runs them on a CUDA GPU.
bench: $(STAMP)
	$(PY) -m bench.backbone --profile
	$(PY) -m bench.fcos --compile --profile
	$(PY) -m bench.classify

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
