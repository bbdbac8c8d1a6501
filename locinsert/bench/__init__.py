"""Speed benchmarks behind `locinsert bench`: sampling (here), training and evaluation."""
