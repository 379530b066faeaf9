# Two commands do all set-up on a fresh machine: `make run` (the local stack) and `make test`.
# Both build .venv from the pinned requirements and, when run as root, install the Debian packages
# the real-component tests and the local stack need.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
REQS := requirements.txt requirements-dev.txt pyproject.toml $(wildcard agent/requirements*.txt agent/pyproject.toml)
STAMP := $(VENV)/.installed-$(shell cat $(REQS) 2>/dev/null | md5sum | cut -c1-12)
# mosquitto: the MQTT broker; nftables/iproute2: the agent's firewall tests in network namespaces;
# openssh-server: the agent's SFTP service; openssl: test certificates; chromium: the IPAuth page's
# browser tests (Playwright drives /usr/bin/chromium; no `playwright install`); openarena-server: a real
# Quake 3 server the agent's player query is tested against (/usr/games/openarena-server).
SYSTEM_PACKAGES := mosquitto nftables openssh-server openssl iproute2 chromium e2fsprogs util-linux curl debootstrap systemd-container openarena-server
STAGE ?= dev

.PHONY: venv system-deps test lint typecheck pytest run bench register package clean \
	template deploy destroy rotate-token rotate-link-key cost workflows doctor load fuzz

$(STAMP): $(REQS)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements-dev.txt
	$(BIN)/pip install -q -e . $(if $(wildcard agent/pyproject.toml),-e agent,)
	$(if $(wildcard agent/requirements-dev.txt),$(BIN)/pip install -q -r agent/requirements-dev.txt,)
	rm -f $(VENV)/.installed-*
	touch $@

venv: $(STAMP)

system-deps:
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  missing=""; for p in $(SYSTEM_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	  if [ -n "$$missing" ]; then echo "installing:$$missing"; apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; fi; \
	else echo "not root (or no apt): not installing $(SYSTEM_PACKAGES); tests needing them will skip"; fi

lint: venv
	$(BIN)/ruff check .

typecheck: venv
	$(BIN)/mypy
	$(if $(wildcard agent/src),$(BIN)/mypy --config-file agent/pyproject.toml agent/src agent/tests,)

pytest: venv system-deps
	$(BIN)/pytest -q -n 2 --dist loadfile tests $(wildcard agent/tests)

test: lint typecheck pytest

# Generated hostile input through every entry point, FUZZ_EXAMPLES (10,000) inputs each, then the
# count per door (docs/security.md). `make test` runs the same doors with a hundred inputs each.
FUZZ_EXAMPLES ?= 10000
fuzz: venv
	mkdir -p build && rm -f build/fuzz.jsonl
	GANGWAY_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) GANGWAY_FUZZ_REPORT=$(CURDIR)/build/fuzz.jsonl \
	  $(BIN)/pytest -q -p no:logging tests/test_fuzz_api.py tests/test_fuzz_queues.py \
	  agent/tests/test_agent_fuzz.py; status=$$?; \
	  $(BIN)/python -m tests.fuzz_report build/fuzz.jsonl && exit $$status

run: venv system-deps
	$(BIN)/gangway run

bench: venv system-deps template
	$(BIN)/python bench/cold_start.py
	$(BIN)/python bench/first_command.py
	$(BIN)/python bench/interaction_cost.py
	$(BIN)/python bench/package_size.py
	$(if $(wildcard bench/agent.py),$(BIN)/python bench/agent.py,)
	$(BIN)/python bench/first_boot.py
	$(BIN)/python bench/start_model.py
	$(BIN)/python bench/cost.py --stage $(STAGE)
	$(BIN)/python bench/catalogue.py
	@cat bench/results.json

# The local stack under RATE signed interactions a second for SECONDS (bounded; loopback only), docs/scale.md.
load: venv system-deps
	$(BIN)/python bench/load.py $(if $(RATE),--rate $(RATE),) $(if $(SECONDS),--seconds $(SECONDS),)

# Rebuilds the *.asl.json made from chalicelib/workflows/src/ (shared states are edited there, once).
workflows: venv
	$(BIN)/python -m chalicelib.workflows.compose --write

register: venv
	$(BIN)/gangway register $(if $(GUILD),--guild $(GUILD),)

# `chalice package` alone, with the stage's queue names exported (app.py binds each SQS handler to its
# queue when Chalice imports it); `make template` / `make deploy` are the whole system.
package: venv
	env $$($(BIN)/python -c "from deploy.template import Stage, queue_names; \
	  print(' '.join(f'{k}={v}' for k, v in queue_names(Stage.load('$(STAGE)')).items()))") \
	  AWS_DEFAULT_REGION=$${AWS_DEFAULT_REGION:-us-east-1} $(BIN)/chalice package --stage $(STAGE) build/$(STAGE)

# The whole system as one CloudFormation stack per stage (deploy/, README "Deploying").
# template: build/$(STAGE)/sam.json = deploy/template/'s resources merged into Chalice's package.
template: venv
	$(BIN)/python -m deploy build --stage $(STAGE)

# DRY_RUN=1 prints the steps; GUILD=<id> registers the commands to one guild.
deploy: venv
	$(BIN)/python -m deploy deploy --stage $(STAGE) $(if $(GUILD),--guild $(GUILD),) $(if $(DRY_RUN),--dry-run,)

# Before and after a deploy: the account (identity, default VPC, vCPU quotas, image parameter) and the
# Discord application (bot token, endpoint URL, registered commands) of STAGE; GUILD=<id> as for deploy.
doctor: venv
	$(BIN)/gangway doctor --stage $(STAGE) $(if $(GUILD),--guild $(GUILD),)

destroy: venv
	$(BIN)/python -m deploy destroy --stage $(STAGE) $(if $(DRY_RUN),--dry-run,)

# DISCORD_BOT_TOKEN=<new> make rotate-token STAGE=…: store it, recycle the functions' containers.
rotate-token: venv
	$(BIN)/python -m deploy rotate-token --stage $(STAGE) $(if $(DRY_RUN),--dry-run,)

# make rotate-link-key STAGE=…: a new key seals IPAuth links from now on; links already given keep working
# (the previous key is kept) until they expire.
rotate-link-key: venv
	$(BIN)/python -m deploy rotate-link-key --stage $(STAGE) $(if $(DRY_RUN),--dry-run,)

cost: template
	$(BIN)/python -m deploy cost --stage $(STAGE)

clean:
	rm -rf $(VENV) .local build .mypy_cache .ruff_cache .pytest_cache
