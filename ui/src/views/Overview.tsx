import { api, type Overview } from '../api';
import { CostChart } from '../CostChart';
import { formatDuration, formatInt, formatUsdAdaptive, unixOf } from '../format';
import { HINTS } from '../hints';
import { Empty, LoadState, SpendCell, Stat, useLoad } from '../ui';


function Figures({ o }: { o: Overview }) {
  return (
    <section className="stats" aria-label="Pool figures">
      <Stat label="Spend today" value={formatUsdAdaptive(o.spent_today_micro_usd)} hint={HINTS.today} testId="spend-today" />
      <Stat label="Spend this month" value={formatUsdAdaptive(o.spent_this_month_micro_usd)} hint={HINTS.month} />
      <Stat label="Spent in all" value={formatUsdAdaptive(o.spent_total_micro_usd)} testId="spend-total" />
      <Stat
        label="Keys"
        value={
          <>
            {o.active_keys} active <span className="muted">· {o.historical_keys} retired</span>
          </>
        }
        hint={`${o.eligible_keys} of the active keys can take another node now.`}
      />
      <Stat label="Nodes onboarded" value={formatInt(o.nodes_onboarded)} testId="nodes-onboarded" />
      <Stat
        label="Cost per onboarded node"
        value={o.cost_per_node_micro_usd == null ? '—' : formatUsdAdaptive(o.cost_per_node_micro_usd)}
        hint={HINTS.perNode}
      />
      <Stat label="Burn rate" value={`${formatUsdAdaptive(o.burn_rate_micro_usd_per_hour)} / h`} hint={HINTS.burn} />
    </section>
  );
}

const RUNWAY_ROWS = 10;

function Runways({ o }: { o: Overview }) {
  if (o.keys.length === 0) return <Empty>No active key. Add one under Keys so that nodes can be issued a key.</Empty>;
  return (
    <div className="table-wrap">
      <table>
        <caption>Active keys at the current burn rate</caption>
        <thead>
          <tr>
            <th scope="col">Key</th>
            <th scope="col">Spend vs budget</th>
            <th scope="col" title={HINTS.burn}>Burn rate</th>
            <th scope="col" title={HINTS.runway}>Budget runs out in</th>
          </tr>
        </thead>
        <tbody>
          {o.keys.slice(0, RUNWAY_ROWS).map((k) => (
            <tr key={k.id}>
              <td>
                <a href={`#/keys/${k.id}`}>{k.name || `key ${k.id}`}</a>
              </td>
              <td>
                <SpendCell spent={k.spent_micro_usd} budget={k.budget_micro_usd} />
              </td>
              <td>{formatUsdAdaptive(k.burn_rate_micro_usd_per_hour)} / h</td>
              <td>{k.budget_runs_out_in_secs == null ? <span className="muted">not burning</span> : formatDuration(k.budget_runs_out_in_secs)}</td>
            </tr>
          ))}
        </tbody>
      </table>
      {o.keys.length > RUNWAY_ROWS && (
        <p className="muted small">
          The {RUNWAY_ROWS} keys that run out soonest of {o.keys.length}; all of them under <a href="#/keys">Keys</a>.
        </p>
      )}
    </div>
  );
}

export function OverviewView() {
  const state = useLoad(api.overview, []);
  return (
    <>
      <div className="page-head">
        <h1>Overview</h1>
        <button type="button" onClick={state.reload}>
          Refresh
        </button>
      </div>
      <LoadState state={state} what="the overview">
        {(o) => (
          <>
            <Figures o={o} />
            <section aria-labelledby="plot-title" className="card">
              <h2 id="plot-title">Total cost over time</h2>
              <p className="muted small">
                Cumulative estimated cost; each dashed line is a node being issued a key. Drag to zoom, wheel to zoom, double
                click to reset.
              </p>
              <CostChart key={o.now} keyId={null} now={unixOf(o.now) ?? Math.floor(Date.now() / 1000)} label="Total cost" />
            </section>
            <section className="card" aria-label="Runway per key">
              <Runways o={o} />
            </section>
          </>
        )}
      </LoadState>
    </>
  );
}
