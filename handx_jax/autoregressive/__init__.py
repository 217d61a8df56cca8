"""The autoregressive family: an FSQ motion tokenizer and a text-prefixed decoder over its tokens.

- `fsq`: the tokenizer model (convolutional autoencoder, finite scalar quantisation, Haar patcher).
- `fsq_task`: its Task for `handx train` (configs/fsq.py).
- `fsq_run.FsqRun`: a trained tokenizer restored for encoding and decoding.
- `tokens`: the token files `handx tokenize` writes and `load_tokens` reads.
"""
