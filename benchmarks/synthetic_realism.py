"""Describe a synthetic cohort against the published figures: rates, cytokine peaks, the Hay 2017 rule.

Run:  python benchmarks/synthetic_realism.py [--n 2000] [--seed 1]
(the README quotes its output for n=2000, seed 1). The numbers describe the generator, not patients.
"""

from __future__ import annotations

import argparse

import numpy as np
from sklearn.metrics import roc_auc_score

from crsrisk.cohort.validate import validate_tables
from crsrisk.simulate import simulate_cohort
from crsrisk.tasks import label_table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    sim = simulate_cohort(n=args.n, seed=args.seed)
    c = validate_tables({"patients": sim.patients, "measurements": sim.measurements, "events": sim.events})
    ids = c.patients["patient_id"]

    def worst(event: str):
        e = c.events[c.events["event"] == event]
        return e.groupby("patient_id")["value"].max().reindex(ids).fillna(0).to_numpy()

    crs, icans = worst("crs_grade"), worst("icans_grade")
    toci = c.events.loc[c.events["event"] == "tocilizumab", "patient_id"].nunique() / len(ids)
    refractory = label_table(c, "toci_refractory", None)
    refractory = refractory[~refractory["excluded"]]["label"].astype(float).mean()
    print(
        f"any CRS {np.mean(crs >= 1):.1%}  grade>=3 {np.mean(crs >= 3):.1%}  ICANS {np.mean(icans >= 1):.1%} "
        f"(grade>=3 {np.mean(icans >= 3):.1%})  tocilizumab {toci:.1%}  refractory among treated {refractory:.1%}"
    )
    after = c.measurements[c.measurements["hours_since_infusion"] >= 0]
    peak = after.groupby(["patient_id", "analyte"])["value"].max().unstack().reindex(ids)
    severe = crs >= 3
    for name in ("il6", "ifng", "il1ra", "mcp1", "ferritin", "crp"):
        print(
            f"median peak {name}: severe CRS {peak.loc[severe, name].median():,.0f}, "
            f"others {peak.loc[~severe, name].median():,.0f}"
        )
    early = after[after["hours_since_infusion"] < 36]
    first = early.groupby(["patient_id", "analyte"])["value"].max().unstack().reindex(ids)
    rule = ((first["temperature"] >= 38.9) & (first["mcp1"] >= 1343.5)).astype(int).to_numpy()
    print(
        f"Hay 2017 rule within 36 h for grade>=3: sensitivity {rule[severe].mean():.2f}, specificity "
        f"{1 - rule[~severe].mean():.2f}, AUROC {roc_auc_score(severe, rule):.2f}; for grade 4: sensitivity "
        f"{rule[crs >= 4].mean():.2f}"
    )


if __name__ == "__main__":
    main()
