"""Benchmark families: how each multiple-choice benchmark is loaded, prompted and scored."""
