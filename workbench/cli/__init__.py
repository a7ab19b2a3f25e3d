"""The ``workbench`` command line: run studies, ingest, query, show spaces and layers, start the app.

Each command parses its flags and calls the library; the Streamlit launcher (``_launch``) lives here
because starting a server is the command line's job, not an analysis.
"""

from workbench.cli._commands import app, main

__all__ = ["app", "main"]
