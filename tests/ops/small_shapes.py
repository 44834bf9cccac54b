"""A small input shape per registered op, in its `make_inputs` convention (batch first): the shared
inputs of the checklist in test_every_op.py and the autocast tests."""

SMALL = {
    "affine_coupling": (5, 37),
    "gram_logdet": (3, 20, 5),
    "lowrank_gaussian_log_prob": (6, 9, 3),
    "nif_block": (3, 4, 6, 2),
    "rq_spline": (5, 7, 8),
    "tril_gaussian_log_prob": (4, 6),
}
