"Sphinx settings for the docs site that `tools/build-docs` renders from nbdev's processed notebooks (no Quarto needed)"
import configparser
from pathlib import Path

_cfg = configparser.ConfigParser(interpolation=None)
_cfg.read(Path(__file__).resolve().parents[1] / 'settings.ini')
cfg = _cfg['DEFAULT']

project, author, copyright = cfg['title'], cfg['author'], cfg['copyright']
release = version = cfg['version']
extensions = ['myst_nb']
myst_enable_extensions = ['attrs_block', 'colon_fence']   # no dollarmath: '$' is money here, and MathJax would come from a CDN
nb_execution_mode = 'off'   # outputs are the ones nbdev saved and processed
nb_ipywidgets_js = {}       # no widget scripts from a CDN; tools/build-docs replaces unsaved widgets
nb_merge_streams = True
html_theme = 'sphinx_book_theme'
html_title = cfg['title']
html_static_path = ['_static']
html_css_files = ['nbdev.css']
html_context = dict(default_mode='auto')   # unset, the theme logs 'Got invalid theme mode' as a console error
html_theme_options = dict(repository_url=cfg['git_url'], use_repository_button=True, home_page_in_toc=True,
                          show_toc_level=2, navigation_with_keys=False)
