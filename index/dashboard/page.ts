/** The dashboard's HTML: a frame the script (app.js) fills from the index's event stream. */
export function dashboardPage(): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light dark">
<title>flare-ts cluster</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="/dashboard/uplot.css">
<link rel="stylesheet" href="/dashboard/app.css">
</head>
<body>
<header>
  <h1>flare-ts cluster</h1>
  <span id="map-version" class="pill">map –</span>
  <span id="leader" class="pill">connecting…</span>
  <span id="live" class="pill" title="updates pushed by the index">○ offline</span>
  <form class="token" onsubmit="return false"><label>admin token <input id="token" type="password" autocomplete="off" placeholder="for changes"></label></form>
</header>
<div id="message" role="status" aria-live="polite"></div>
<main>
  <section aria-labelledby="partitions-title">
    <h2 id="partitions-title">Partitions</h2>
    <div id="partitions" class="cards"></div>
  </section>
  <section aria-labelledby="spare-title">
    <h2 id="spare-title">Proxies and spare nodes</h2>
    <div id="spare"></div>
  </section>
  <section aria-labelledby="timeline-title">
    <h2 id="timeline-title">Timeline</h2>
    <ol id="timeline"></ol>
  </section>
</main>
<script src="/dashboard/uplot.js"></script>
<script src="/dashboard/app.js"></script>
</body>
</html>
`;
}
