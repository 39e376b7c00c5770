# Everyday tasks. `make test` is the README's test command inside the current environment.
.PHONY: install test lint format typing serve bench

install:
	pip install -e '.[test]'

test:
	pytest

lint:
	ruff check .
	ruff format --check .
	lint-imports

format:
	ruff format .
	ruff check --fix .

typing:
	mypy watcher sources rules notifications

serve:
	watcher run

bench:
	python bench/poll.py
	python bench/connections.py
	python bench/parse.py
	python bench/classify.py
	python bench/digest.py
	python bench/feeds.py
	python bench/web.py
