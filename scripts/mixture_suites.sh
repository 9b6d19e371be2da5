# Sourced by scripts/mixture_evidence.sh and scripts/opd_evidence.sh: the evaluation suites every arm of the mixture
# evidence is read on (each word domain in packs of 4 and 8, the Ralph loop, hints hidden), as one override.
SUITES="eval.suites=hidden_key,hidden_key/s8,hidden_key/s8/ralph_sample,hidden_key/s8/hidden"
SUITES+=",code_lock,code_lock/s8,code_lock/s8/ralph_sample,code_lock/s8/hidden"
