import pathlib
import re

from setuptools import setup

HERE = pathlib.Path(__file__).parent
VERSION = re.search(r'__version__ = "([^"]+)"',
                    (HERE / "digaas" / "__init__.py").read_text()).group(1)

setup(
    name="digaas",
    version=VERSION,
    description="Dig as a Service: measure how long DNS changes take to reach nameservers",
    long_description=(HERE / "README.md").read_text(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=["digaas"],
    py_modules=["digaas_config"],
    data_files=[("share/digaas", ["uwsgi.ini"])],
    # Lower bounds only; requirements.txt pins the versions that are tested.
    install_requires=["dnspython>=2.6", "falcon>=4.0", "gevent>=24.2", "matplotlib>=3.8",
                      "hiredis>=2.0", "numpy>=1.26", "redis>=5.0",
                      "requests>=2.28", "uWSGI>=2.0.22"],
    entry_points={"console_scripts": ["digaas = digaas.cli:main"]},
)
