"""Many people on one deployment (docs/design.md, "Many people"): the keys
their passwords are kept under, and the directory the stages ask who is who."""
