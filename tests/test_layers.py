"""The import order of the package: a module imports only modules below it, and there are no circles.

Every import of every module of trading_nb/ counts, those inside functions too (the command line imports its
stages lazily, and a lazy upward import is a circle all the same). A new module must be placed in `LAYERS`."""
import ast, shutil
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / 'trading_nb'

# Top to bottom. A module may import modules of the layers below its own, never its own layer or one above.
# The same order is in the README's stage table and in nbs/08_pipeline.ipynb.
LAYERS = [
    ['cli'],                                              # the command line: parses, calls the layers below, prints
    ['benchmark'],                                        # model kinds x seeds: run folders, then the table of means and spreads
    ['experiment'],                                       # experiments as files: TOML, overrides, compare, tune
    ['pipeline'],                                         # one run: an Experiment in, a run folder out
    ['report', 'importance'],                             # the run's HTML report and terminal summary; permutation importance
    ['serve'],                                            # the live service: WebSocket/HTTP around the stream, snapshots, reload
    ['inference'],                                        # export, safe loading, batch and streaming inference
    ['train', 'tabular'],                                 # the training loop; the tabular models' fitting (LightGBM, linear)
    ['distributed'],                                      # torchrun, DDP, devices
    ['store'],                                            # the on-disk feature store
    ['dataset'],                                          # windows and chronological splits
    ['panel', 'explore', 'incremental', 'backtest'],      # panels, the explorer, streamed features, practitioner backtests
    ['features', 'cross_section'],                        # features; cross-sectional evaluation
    ['data', 'evaluate', 'model'],                        # bars; metrics and baselines; the network
]


def module_imports(pkg: Path) -> dict:
    "`{module: [(imported module, line)]}` for every module of the package `pkg`, from its source (nothing is imported)"
    name = pkg.name
    out = {}
    for f in sorted(pkg.glob('*.py')):
        if f.name.startswith('_'): continue   # __init__ (the version) and _modidx (nbdev's index) import nothing of ours
        found = []
        for node in ast.walk(ast.parse(f.read_text(), filename=str(f))):
            if isinstance(node, ast.ImportFrom):
                mod = node.module or ''
                if node.level == 1: target = mod.split('.')[0] or None
                elif mod == name: target = None   # `from trading_nb import __version__`
                elif mod.startswith(name + '.'): target = mod.split('.')[1]
                else: continue
                if target is None:   # `from . import x` / `from trading_nb import x`: the names are modules
                    found += [(a.name, node.lineno) for a in node.names if (pkg / f'{a.name}.py').exists()]
                else: found.append((target, node.lineno))
            elif isinstance(node, ast.Import):
                found += [(a.name.split('.')[1], node.lineno) for a in node.names if a.name.startswith(name + '.')]
        out[f.stem] = sorted(set(x for x in found if x[0] != f.stem))
    return out


def find_cycle(deps: dict) -> list | None:
    "One import circle as a list of modules (first == last), or None"
    state, stack = {}, []
    def visit(m):
        state[m] = 'open'; stack.append(m)
        for d, _ in deps.get(m, []):
            if state.get(d) == 'open': return stack[stack.index(d):] + [d]
            if d not in state and (c := visit(d)): return c
        state[m] = 'done'; stack.pop()
        return None
    for m in sorted(deps):
        if m not in state and (c := visit(m)): return c
    return None


def layer_problems(deps: dict, layers: list = LAYERS, pkg: str = 'trading_nb') -> list:
    "Every import that runs up (or across) the declared order, every module not placed in it, and a circle if there is one"
    rank = {m: i for i, layer in enumerate(layers) for m in layer}
    problems = [f"{pkg}/{m}.py is not placed in the layer order: add it to LAYERS in tests/test_layers.py (and the README)"
                for m in sorted(deps) if m not in rank]
    for m, imported in sorted(deps.items()):
        for d, line in imported:
            if m in rank and d in rank and rank[d] <= rank[m]:
                where = 'the same layer as' if rank[d] == rank[m] else 'above'
                problems.append(f"{pkg}/{m}.py:{line} imports {pkg}.{d}, which is {where} {m} in the layer order: "
                                f"move what {m} needs from {d} down to a layer below {m}")
    if (cycle := find_cycle(deps)): problems.append(f"import circle: {' -> '.join(cycle)}")
    return problems


def test_the_package_keeps_its_layers():
    deps = module_imports(PKG)
    assert {'cli', 'pipeline', 'report', 'experiment', 'train', 'distributed'} <= set(deps)   # the reader sees the real package
    problems = layer_problems(deps)
    assert not problems, '\n'.join(problems)


def test_nothing_imports_the_command_line():
    deps = module_imports(PKG)
    assert [m for m, imported in deps.items() if 'cli' in {d for d, _ in imported}] == []


def test_lazy_imports_count(tmp_path):
    "An import inside a function is read too: it is a circle at run time all the same"
    pkg = tmp_path / 'trading_nb'
    shutil.copytree(PKG, pkg, ignore=shutil.ignore_patterns('__pycache__', 'sample_data'))
    (pkg / 'data.py').write_text((pkg / 'data.py').read_text() + '\n\ndef _late():\n    from trading_nb.train import fit\n    return fit\n')
    problems = layer_problems(module_imports(pkg))
    assert any(p.startswith('trading_nb/data.py:') and 'imports trading_nb.train, which is above data' in p for p in problems), problems
    assert any(p.startswith('import circle:') for p in problems), problems


def test_an_upward_import_in_a_new_module_fails(tmp_path):
    "A temporary module placed low that imports the pipeline fails, naming both; an unplaced module fails too"
    pkg = tmp_path / 'trading_nb'
    shutil.copytree(PKG, pkg, ignore=shutil.ignore_patterns('__pycache__', 'sample_data'))
    (pkg / 'helpers.py').write_text('from .pipeline import train_pipeline\n')
    layers = [layer + (['helpers'] if 'data' in layer else []) for layer in LAYERS]
    problems = layer_problems(module_imports(pkg), layers)
    test = [p for p in problems if 'helpers' in p]
    assert test == ["trading_nb/helpers.py:1 imports trading_nb.pipeline, which is above helpers in the layer order: "
                    "move what helpers needs from pipeline down to a layer below helpers"], problems
    assert layer_problems(module_imports(pkg)) == [
        "trading_nb/helpers.py is not placed in the layer order: add it to LAYERS in tests/test_layers.py (and the README)"]
    (pkg / 'helpers.py').write_text('import numpy as np\nfrom trading_nb.data import load_ohlcv\n')   # downward: fine
    assert layer_problems(module_imports(pkg), layers) == [
        "trading_nb/helpers.py:2 imports trading_nb.data, which is the same layer as helpers in the layer order: "
        "move what helpers needs from data down to a layer below helpers"]


def test_a_circle_is_named():
    deps = {'a': [('b', 1)], 'b': [('c', 3)], 'c': [('a', 7)], 'd': [('a', 2)]}
    assert find_cycle(deps) == ['a', 'b', 'c', 'a']
    assert find_cycle({'a': [('b', 1)], 'b': []}) is None
    assert 'import circle: a -> b -> c -> a' in layer_problems(deps, [['d'], ['c'], ['b'], ['a']], pkg='p')


@pytest.mark.parametrize('name', [m for layer in LAYERS for m in layer])
def test_every_declared_module_is_real(name):
    "A name in LAYERS is a module of the package (a module removed or renamed leaves no stale entry behind)"
    assert (PKG / f'{name}.py').exists(), f"LAYERS names {name}, which trading_nb/ does not have"
