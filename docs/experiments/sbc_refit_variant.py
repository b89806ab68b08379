"""Refit some of the bundled-design SBC's simulated data sets with a variant of the fit.

The data sets are drawn exactly as ``densing-bayes sbc default --design bundled`` draws them
(the default model's prior, each simulation's seed in the 100-simulation batch); each is then
fitted with a variant: some pooled priors non-centred (the same model in other coordinates)
and/or another NUTS target acceptance, with the batch's sampler seed. Prints and writes, per
simulation: divergences, where they start, minimum bulk ESS of the ranked quantities, leapfrog
steps per draw and the ranks. Used for docs/model.md, "Where the divergences start" (2026-12-01):

    python docs/experiments/sbc_refit_variant.py OUT.json 2,5,6,1 \\
        --non-centred mc_sigmoid_log_slope,mc_sigmoid_log_midpoint
    python docs/experiments/sbc_refit_variant.py OUT.json 3,6 --target-accept 0.97
    python docs/experiments/sbc_refit_variant.py OUT.json 3,0 --dense-pilot

``--dense-pilot`` fits each data set the way ``densing-bayes fit`` fits new data with
``mass_matrix = "dense"`` and ``pilot_draws``: a diagonal-metric pilot (at least 2 draws per
coordinate, here one chain), then NUTS in coordinates whitened by the pilot's covariance
(``inference.sample``); the model is rebuilt with the simulated data frozen in, so each
simulation compiles its own.

A whole batch at another target acceptance needs no script: ``densing-bayes sbc ...
--target-accept 0.97``. Draws are reproducible on the same numerical stack (package commit
included), not across stacks.
"""
import argparse
import json
import time

import numpy as np


def main() -> None:
    import nutpie

    from densing_bayes.analysis import calibration as cal
    from densing_bayes.inference.diagnostics import divergence_locations
    from densing_bayes.inference.sample import sample_model
    from densing_bayes.model.build import build_model
    from densing_bayes.model.inputs import prepare_inputs
    from densing_bayes.model.priors import DEFAULT_PRIORS
    from densing_bayes.model.spec import load_spec

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("ids", help="simulation ids of the 100-simulation batch, e.g. 0,3,12")
    parser.add_argument("--non-centred", default="", help="pooled priors to non-centre")
    parser.add_argument("--target-accept", type=float, default=0.9)
    parser.add_argument("--draws", type=int, default=300)
    parser.add_argument("--tune", type=int, default=300)
    parser.add_argument("--dense-pilot", action="store_true",
                        help="pilot + whitened fit, as `fit` does for new data")
    args = parser.parse_args()

    spec = load_spec("default").with_overrides(
        {"sampler": {"draws": args.draws, "tune": args.tune, "chains": 1}})
    priors = {}
    for name in filter(None, args.non_centred.split(",")):
        entry = DEFAULT_PRIORS[name].prior.to_dict()
        priors[name] = {**entry, "centered": False, "dims": list(entry["dims"])}
    variant = spec.with_overrides({"priors": priors}) if priors else spec

    structure = cal._build_structure(spec, cal.DESIGN_SEED, "bundled")  # draws the data
    inputs = prepare_inputs(cal.design_data(cal.DESIGN_SEED, "bundled", spec), spec)
    compiled = (None if args.dense_pilot
                else nutpie.compile_pymc_model(build_model(inputs, variant)))
    seeds = cal.simulation_seeds(spec.sampler.seed, 100)
    results = {}
    for i in (int(x) for x in args.ids.split(",")):
        prior_seed, sampler_seed, tie_seed = cal.task_seeds(seeds[i])
        truth, observed, _ = cal._prior_draw(structure, prior_seed)
        start = time.perf_counter()
        extra = {}
        if args.dense_pilot:
            model = build_model(inputs, variant)
            for name, value in observed.items():
                model.set_data(name, value)
            settings = variant.sampler.model_copy(update={
                "mass_matrix": "dense", "pilot_draws": 1, "seed": sampler_seed,
                "target_accept": args.target_accept})
            idata, times = sample_model(model, settings, progress=False, predictive=False)
            attrs = idata.posterior.attrs
            extra = {"metric": attrs.get("nuts_metric"),
                     "pilot": {k[len("nuts_pilot_"):]: v for k, v in attrs.items()
                               if k.startswith("nuts_pilot_")},
                     "compile_seconds": round(times.compile_seconds, 1)}
        else:
            idata = nutpie.sample(compiled.with_data(**observed), draws=args.draws,
                                  tune=args.tune, chains=1, cores=1, seed=sampler_seed,
                                  progress_bar=False, target_accept=args.target_accept,
                                  save_warmup=False, store_divergences=True,
                                  store_unconstrained=True)
        seconds = time.perf_counter() - start
        post = idata.posterior
        values = {n: post[n].values for n in ("slope_pre", "slope_post", "trend_intercept",
                                              "benchmark_drift_sd", "score_precision_unstated",
                                              "alpha")}
        draws = cal.rank_quantities(values, structure.benchmarks)
        thinned, factor, ess = cal.thin_to_ess(draws)
        truths = cal.rank_quantities(truth, structure.benchmarks)
        rng = np.random.default_rng(tie_seed)
        results[i] = {
            "sim_id": i, "n_draws": int(next(iter(thinned.values())).size), "thin": factor,
            "ranks": {q: cal.rank_of(float(truths[q]), thinned[q], rng) for q in draws},
            "divergences": int(idata.sample_stats["diverging"].sum()), "min_ess_bulk": ess,
            "steps": float(idata.sample_stats["n_steps"].mean()), "seconds": round(seconds, 1),
            "where": divergence_locations(idata) if not args.dense_pilot else None, **extra}
        print(i, results[i]["divergences"], round(ess), round(results[i]["steps"]),
              [(w["coordinate"], round(w["mean_percentile"], 2))
               for w in results[i]["where"] or []], extra,
              flush=True)
        with open(args.out, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
