"""Notebook panels (ipywidgets / anywidget); the only package besides magics.py that imports them."""
