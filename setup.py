"Packaging for trading_nb: metadata comes from settings.ini, as in nbdev 2 projects."
import shlex
from configparser import ConfigParser
import setuptools

# The classic nbdev 2 template imports `parse_version` from `pkg_resources`; setuptools >= 81 ships no
# `pkg_resources`, so this file does without it.
config = ConfigParser(delimiters=['='])
config.read('settings.ini', encoding='utf-8')
cfg = config['DEFAULT']

licenses = {'apache2': 'Apache-2.0'}   # SPDX expressions (setuptools >= 77 deprecates licence classifiers)
statuses = ['1 - Planning', '2 - Pre-Alpha', '3 - Alpha', '4 - Beta', '5 - Production/Stable', '6 - Mature', '7 - Inactive']
lic = licenses.get(cfg['license'].lower(), cfg['license'])
min_python = cfg['min_python']

requirements = shlex.split(cfg.get('requirements', ''))
dev_requirements = shlex.split(cfg.get('dev_requirements', ''))
# Optional extras, each a `<name>_requirements` key of settings.ini: `pip install trading_nb[ray]`
extras = {k[:-len('_requirements')]: shlex.split(v) for k, v in cfg.items() if k.endswith('_requirements') and k not in ('dev_requirements', 'pip_requirements', 'conda_requirements')}

setuptools.setup(
    name=cfg['lib_name'],
    version=cfg['version'],
    description=cfg['description'],
    author=cfg['author'],
    author_email=cfg['author_email'],
    license=lic,
    keywords=cfg['keywords'],
    classifiers=[
        'Development Status :: ' + statuses[int(cfg['status'])],
        'Intended Audience :: ' + cfg['audience'].title(),
        'Natural Language :: ' + cfg['language'].title(),
        'Programming Language :: Python :: ' + min_python,
    ],
    url=cfg['git_url'],
    # The bundled market data: `trading_nb/sample_data` is a symlink to the top-level `data/` folder,
    # shipped as a data-only package so `load_sample` works from a wheel as well as from a checkout.
    packages=setuptools.find_packages(include=['trading_nb', 'trading_nb.*']) + ['trading_nb.sample_data'],
    package_data={'trading_nb.sample_data': ['*.csv', '*.md', '*.txt']},
    include_package_data=True,
    install_requires=requirements,
    extras_require={'dev': dev_requirements, **extras},
    python_requires='>=' + min_python,
    long_description=open('README.md', encoding='utf-8').read(),
    long_description_content_type='text/markdown',
    zip_safe=False,
    entry_points={
        'console_scripts': cfg.get('console_scripts', '').split(),
        'nbdev': [f'{cfg["lib_path"]}={cfg["lib_path"]}._modidx:d'],
    },
)
