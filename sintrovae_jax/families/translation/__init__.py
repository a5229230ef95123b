"""The translation family: class and content encoders and an AdaIN generator
(docs/translation.md)."""
