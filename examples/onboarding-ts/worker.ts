// The worker entry point: `npm run worker` (or `node --import tsx worker.ts`).

import "./tether/functions/index.js";
import { tether } from "./tether/client.js";

await tether.serve();
