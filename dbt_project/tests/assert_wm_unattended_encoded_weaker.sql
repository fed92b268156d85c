-- Attention gates encoding: in every window each unattended memory is encoded more weakly than each
-- attended one.
select window_start
from {{ ref('wm_attention') }}
group by window_start
having max(encoding_strength) filter (where not attended) >= min(encoding_strength) filter (where attended)
