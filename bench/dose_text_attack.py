"""CPU time of the dose arithmetic on adversarial dosage text (issue 15, item 5).

    .venv/bin/python bench/dose_text_attack.py

Each order has N dosage lines whose text and patientInstruction are a dose ("10 mg tid") followed by
~2,000 crafted characters. The per-order line bound is lifted here (when the code has one) so the growth
with N shows; the service stops at CDS_DOSE_MAX_LINES (20). CPU time, one run each: a rough figure.
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
    bounded = "max_lines" in compute_dose.__code__.co_varnames
    for lines in (20, 100, 400):
        for name, filler in SHAPES.items():
            dosage = {"text": "10 mg tid " + filler, "patientInstruction": filler}
            order = {"resourceType": "MedicationRequest", "dosageInstruction": [dosage] * lines}
            start = time.process_time()
            result = compute_dose(order, max_lines=10**6) if bounded else compute_dose(order)  # type: ignore[call-arg]
            cpu = time.process_time() - start
            print(f"lines={lines:4d} {name:14s} cpu={cpu * 1000:9.1f} ms ok={result.ok}", flush=True)


if __name__ == "__main__":
    main()
