// How the derived figures are computed (SPEC: shown on hover), in one place for every view.

export const HINTS = {
  today: 'Estimated cost of today (UTC) so far, from hourly usage priced with the price table.',
  month: 'Estimated cost of this calendar month (UTC) so far.',
  perNode:
    'Total cost ÷ nodes ever issued a key. An estimate: the Admin API cannot tell apart nodes that share a key.',
  burn: 'Cost of the last 24 hours ÷ 24.',
  runway: 'Budget runs out in = (budget − spent) ÷ burn rate, shown only when the key burns anything.',
  attributed:
    'Estimate: each hour, a key’s cost is split evenly among the nodes holding it; a node’s share is summed over the hours it held the key.',
};
