"""The thin library every paper stands on: data sets, accelerator utilities, metrics and run helpers."""
