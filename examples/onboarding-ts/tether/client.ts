// The app's one Tether client, with its events' types. Every module that
// defines functions or sends events imports it.

import { Tether } from "@tether/sdk";

export type Events = {
  "app/user.signup": { data: { user_id: number; email: string } };
  "app/project.created": { data: { user_id: number } };
};

export const tether = new Tether<Events>({ appId: "onboarding-ts" });
