"""`python -m suite study`: the notes' questions as studies — arms that differ in one knob, trained with the same
seeds through the one runner, compared with a statistical test, judged against the notes' claim.

spec.py     the study file (experiments/studies/<name>.toml): schema, checks, the arms' resolved configs
verdict.py  the claim's comparisons judged from the numbers (Welch's t-test, TOST for "~", exact for constants)
study.py    running every arm × seed (resumable) and collecting each run's figures
report.py   report.md, study.json and study.png
"""
