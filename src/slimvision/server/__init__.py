"""``slimvision serve``: the web page (models run in the browser) and a JSON API for the rest.

Needs the ``web`` extra (FastAPI, uvicorn, python-multipart) and, for the page's in-browser
runtime, ``npm install`` in the repository's ``web/`` folder (``make web``).
"""
