// On signup: welcome email; a day later the getting-started guide; if the user
// still has no project two days after that, a nudge.

import { NonRetriableError } from "@tether/sdk";

import * as services from "../../services.js";
import { tether } from "../client.js";

export const onboardingFlow = tether.createFunction(
  { id: "onboarding-flow", event: "app/user.signup" },
  async ({ event, step, logger }) => {
    const { user_id: userId, email } = event.data;
    if (!Number.isInteger(userId) || !email) {
      throw new NonRetriableError("app/user.signup needs data.user_id (an integer) and data.email");
    }

    await step.run("send-welcome-email", () => services.email.send(email, "welcome"));
    await step.sleep("wait-1d", "24h");
    await step.run("send-getting-started-guide", () => services.email.send(email, "getting-started"));

    const hasProject = await step.run("check-for-project", () => services.projects.hasProject(userId));
    if (hasProject) {
      logger.info(`user ${userId} created a project; no nudge needed`);
      return { user_id: userId, nudged: false };
    }

    await step.sleep("wait-2d", "48h");
    await step.run("send-nudge-email", () => services.email.send(email, "nudge"));
    return { user_id: userId, nudged: true };
  },
);
