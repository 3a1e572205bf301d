// How long planning takes, and how it grows with T and the budget (docs/benchmarks.md).
#include <benchmark/benchmark.h>

#include "membptt/plan/binomial.hpp"
#include "membptt/plan/dp.hpp"
#include "membptt/plan/planner.hpp"

namespace membptt {
namespace {

// The whole MSM table at T, for every budget up to plain BPTT's memory (alpha = 4).
void BM_MsmFullTable(benchmark::State& state) {
  const std::int64_t T = state.range(0);
  for (auto _ : state) {
    DpTable t(DpFamily::Msm, T, 4 * (T - 1), MemoryGrid{1, 4});
    benchmark::DoNotOptimize(t.cost(T, 0));
  }
  state.counters["cells"] = static_cast<double>(T + 1) * static_cast<double>(4 * (T - 1) + 1);
}
BENCHMARK(BM_MsmFullTable)->Arg(250)->Arg(500)->Arg(1000)->Iterations(3)->Unit(benchmark::kMillisecond);

// MSM plans at a fixed budget (units), growing T.
void BM_MsmPlan(benchmark::State& state) {
  const std::int64_t T = state.range(0);
  const double budget = static_cast<double>(state.range(1));
  Plan plan;
  for (auto _ : state) benchmark::DoNotOptimize(plan = make_plan(Policy::Msm, T, budget, CostModel{4.0, 2.0}));
  state.counters["per_step"] = plan.steps_per_step();
  state.counters["exact"] = plan.optimal ? 1 : 0;
  state.counters["vs_bound"] = static_cast<double>(plan.forward_steps) / static_cast<double>(plan.lower_bound);
}
BENCHMARK(BM_MsmPlan)
    ->Args({1000, 200})
    ->Args({10000, 200})
    ->Args({10000, 1000})
    ->Args({100000, 200})
    ->Args({100000, 1000})
    ->Args({1000000, 1000})
    ->Args({1000000, 10000})
    ->Iterations(2)
    ->Unit(benchmark::kMillisecond);

// The exact MSM table alone at T and a budget (units, alpha = 4), beside the plans past it.
void BM_MsmExactTable(benchmark::State& state) {
  const std::int64_t T = state.range(0), free_ticks = state.range(1) - 4;
  for (auto _ : state) {
    DpTable t(DpFamily::Msm, T, free_ticks, MemoryGrid{1, 4});
    benchmark::DoNotOptimize(t.cost(T, free_ticks));
  }
}
BENCHMARK(BM_MsmExactTable)->Args({10000, 200})->Args({10000, 1000})->Iterations(1)->Unit(benchmark::kMillisecond);

// The naive O(T^2 F) scan, for the ratio.
void BM_MsmNaiveTable(benchmark::State& state) {
  const std::int64_t T = state.range(0);
  for (auto _ : state) {
    DpTable t(DpFamily::Msm, T, 4 * (T - 1), MemoryGrid{1, 4}, /*naive=*/true);
    benchmark::DoNotOptimize(t.cost(T, 0));
  }
}
BENCHMARK(BM_MsmNaiveTable)->Arg(250)->Iterations(1)->Unit(benchmark::kMillisecond);

// Revolve (HSM by the closed form), the plan including its dry run over the whole schedule.
void BM_RevolvePlan(benchmark::State& state) {
  const std::int64_t T = state.range(0);
  for (auto _ : state) benchmark::DoNotOptimize(make_plan(Policy::Revolve, T, 24.0, CostModel{4.0, 2.0}).forward_steps);
}
BENCHMARK(BM_RevolvePlan)->Arg(100000)->Arg(1000000)->Iterations(3)->Unit(benchmark::kMillisecond);

void BM_HsmClosedForm(benchmark::State& state) {
  for (auto _ : state) benchmark::DoNotOptimize(hsm_cost(1000000, 20));
}
BENCHMARK(BM_HsmClosedForm);

}  // namespace
}  // namespace membptt

BENCHMARK_MAIN();
