"""CPU time of the dose arithmetic on adversarial dosage text (issue 15, item 5).

    .venv/bin/python bench/dose_text_attack.py

Each order has N dosage lines whose text and patientInstruction are a dose ("10 mg tid") followed by
~2,000 crafted characters. First with the default bounds (what the service does), then with the per-order
bounds lifted (when the code has them) so the growth with N shows. CPU time, one run each: rough figures.
"""

from __future__ import annotations

import time

from cds_service.dose import compute_dose

SHAPES = {
    "digit runs": "1" * 2000,
    "max + spaces": "max" + " " * 1997,
    "numbers+units": "10 mg " * 333,
    "freq words": "tid bid q8h daily " * 111,
    "1 x + spaces": "1 x" + " " * 1997,
    "mixed tokens": "1 x every 6 hours 1.1 1 1/2 " * 71,
}


def main() -> None:
    params = compute_dose.__code__.co_varnames
    lifted = {k: 10**9 for k in ("max_lines", "max_order_chars") if k in params}
    for label, kwargs in (("default bounds", {}), ("order bounds lifted", lifted)):
        if label != "default bounds" and not lifted:
            continue
        for lines in (20, 100, 400):
            for name, filler in SHAPES.items():
                dosage = {"text": "10 mg tid " + filler, "patientInstruction": filler}
                order = {"resourceType": "MedicationRequest", "dosageInstruction": [dosage] * lines}
                start = time.process_time()
                result = compute_dose(order, **kwargs)  # type: ignore[arg-type]
                cpu = time.process_time() - start
                print(
                    f"{label:19s} lines={lines:4d} {name:14s} cpu={cpu * 1000:9.1f} ms "
                    f"ok={result.ok} reason={result.reason}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
