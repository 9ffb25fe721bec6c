# LungSeg: `make run` starts the app and the web page; `make test` runs the tests.
# Each target sets up what it needs (a .venv, the page's npm packages, Debian's chromium).
PY := .venv/bin/python
PIP := .venv/bin/pip

.PHONY: run test setup browser site bench bench-app export-web train-default quality-default clean

run: setup
	$(PY) scripts/start.py

test: setup browser
	$(PY) -m pytest -q

setup: .venv/.installed web/vendor/.installed

.venv/.installed: requirements.txt pyproject.toml
	test -x $(PY) || python3 -m venv .venv
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -r requirements.txt
	$(PIP) install -q -e ".[ray]" -c requirements.txt   # with the Ray engine's extra; the pins kept
	touch $@

web/vendor/.installed: web/package.json web/package-lock.json web/scripts/vendor.mjs lungseg/rules.json
	cd web && npm ci --no-audit --no-fund && node scripts/vendor.mjs
	touch $@

# The page as a folder for any static host (dist/, about 6 MB): copy it anywhere; no special headers needed.
site: web/vendor/.installed
	cd web && node scripts/site.mjs --out ../dist

# Debian's Chromium for the browser tests (Playwright's own browser download needs internet).
browser:
	@test -x /usr/bin/chromium || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium; \
	  else echo "Browser tests need Debian's chromium: sudo apt-get install chromium"; fi; }

bench: setup browser
	$(PY) bench/bench_inference.py
	$(PY) bench/bench_web.py

bench-app: setup browser
	$(PY) bench/load_app.py --sessions 4

# Re-export lungseg/weights/default for the page (picks the smallest precision that keeps parity).
export-web: setup browser
	$(PY) -m export --dtype auto

# Reproduce the committed default model: 10 epochs frozen, then 2 + 4 + 5 + 8 epochs with VGG19
# fine-tuned, then 4 robust epochs (intensity standardisation, degraded copies) and 2 on plain copies
# at a lower rate (about 5.7 h on a 2-core CPU); each stage resumes if interrupted. Then score it:
# paired against the previous default, and under every degradation and on Shenzhen beside it.
DATA ?= ../shared/data/covidqu-ex
WEIGHTS ?= ../shared/weights/vgg19_imagenet_block1-3.npz
TRAIN = .venv/bin/lungseg train --data $(DATA)/Train --val $(DATA)/Val --backbone-weights $(WEIGHTS)
train-default: setup
	$(TRAIN) --out runs/context
	$(TRAIN) --out runs/finetune --fine-tune runs/context/best
	$(TRAIN) --out runs/finetune4 --fine-tune runs/finetune/best --epochs 4
	$(TRAIN) --out runs/finetune9 --fine-tune runs/finetune4/best --epochs 5
	$(TRAIN) --out runs/finetune8 --fine-tune runs/finetune9/best --epochs 8
	$(TRAIN) --out runs/robust --fine-tune runs/finetune8/best --epochs 4 --robust
	$(TRAIN) --out runs/robust-polish --fine-tune runs/robust/best --epochs 2 --learning-rate 3e-5
	.venv/bin/lungseg evaluate --data $(DATA)/Val --model runs/finetune8/best --out reports/finetune8
	.venv/bin/lungseg evaluate --data $(DATA)/Val --model runs/robust-polish/best --out reports/robust-polish
	$(PY) scripts/compare_reports.py reports/finetune8 reports/robust-polish
	$(PY) bench/robustness.py --model runs/finetune8/best --model runs/robust-polish/best

# Fit the default model's quality estimate (its card's "quality"): a twin trained the same way on
# half of Train (about 1.7 h here), scored on the other half as it is and degraded; then score it
# on Val and Shenzhen.
quality-default: setup
	$(TRAIN) --out runs/twin-h0 --folds 2 --holdout 0
	$(TRAIN) --out runs/twin-robust --fine-tune runs/twin-h0/best --folds 2 --holdout 0 --epochs 4 --robust
	$(TRAIN) --out runs/twin-polish --fine-tune runs/twin-robust/best --folds 2 --holdout 0 --epochs 2 --learning-rate 3e-5
	.venv/bin/lungseg fit-quality --twin runs/twin-polish/best --data $(DATA)/Train --false-alarms 0.04 --rows reports/quality-fit-rows.json
	.venv/bin/lungseg evaluate --data $(DATA)/Val --out reports/default
	.venv/bin/lungseg evaluate --data ../shared/data/shenzhen --out reports/shenzhen

clean:
	rm -rf .venv web/node_modules web/vendor runs reports dist
