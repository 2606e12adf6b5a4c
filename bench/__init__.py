"""vtcurate's benchmark suite (`make bench`): every figure is a median of repetitions, reported as
a ratio against a baseline measured in the same run.  Not part of the installed package."""
