# Two entry points: `make demo` and `make test`. Both create .venv from constraints.txt first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEMO_OUT ?= demo-data

.PHONY: demo test lint clean

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt -e '.[dev]'
	touch $@

# collect -> validate -> release (split columns + data card) -> train -> evaluate -> report -> submit -> leaderboard
# render; the world model
# is the committed checkpoint trained on the CPU release, scored zero-shot on the demo's tasks
# (none of them among its training tasks)
demo: $(VENV)/.installed
	$(BIN)/cwm-bench collect --target llvm --workloads mini --per-task 64 --out $(DEMO_OUT)/collection
	$(BIN)/cwm-bench validate $(DEMO_OUT)/collection
	$(BIN)/cwm-bench release $(DEMO_OUT)/collection --out $(DEMO_OUT)/release --name local/cwm-bench-mini
	$(BIN)/cwm-bench train --model ansor-xgb --data $(DEMO_OUT)/release --split within_task \
		--out $(DEMO_OUT)/checkpoints/ansor-xgb
	$(BIN)/cwm-bench evaluate --model $(DEMO_OUT)/checkpoints/ansor-xgb --data $(DEMO_OUT)/release \
		--split within_task --json $(DEMO_OUT)/results/ansor-xgb.json
	$(BIN)/cwm-bench evaluate --model random --data $(DEMO_OUT)/release --split within_task \
		--json $(DEMO_OUT)/results/random.json
	$(BIN)/cwm-bench evaluate --model reference_model/checkpoints/cpu-v0-by_network-seed0 \
		--data $(DEMO_OUT)/release --split within_task --json $(DEMO_OUT)/results/world-model.json \
		--label "world-model (committed checkpoint)"
	$(BIN)/cwm-bench report $(DEMO_OUT)/results/ansor-xgb.json $(DEMO_OUT)/results/random.json \
		$(DEMO_OUT)/results/world-model.json --png $(DEMO_OUT)/results/opa.png
	rm -rf $(DEMO_OUT)/submissions && mkdir -p $(DEMO_OUT)/submissions/ansor-xgb
	cp -r $(DEMO_OUT)/checkpoints/ansor-xgb $(DEMO_OUT)/submissions/ansor-xgb/checkpoint
	cp leaderboard/demo/ansor-xgb.yaml $(DEMO_OUT)/submissions/ansor-xgb/model_meta.yaml
	cp -r leaderboard/submissions/world-model $(DEMO_OUT)/submissions/world-model
	$(BIN)/cwm-bench submit $(DEMO_OUT)/submissions/ansor-xgb --data $(DEMO_OUT)/release --split within_task \
		--results $(DEMO_OUT)/leaderboard/results --force
	$(BIN)/cwm-bench submit $(DEMO_OUT)/submissions/world-model --data $(DEMO_OUT)/release --split within_task \
		--results $(DEMO_OUT)/leaderboard/results --force
	$(BIN)/cwm-bench leaderboard render --results $(DEMO_OUT)/leaderboard/results \
		--html $(DEMO_OUT)/leaderboard/index.html --markdown $(DEMO_OUT)/leaderboard/LEADERBOARD.md

test: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/pytest

lint: $(VENV)/.installed
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) $(DEMO_OUT)
