// Every function of the app; importing this module registers them with the client.

export { onboardingFlow } from "./onboarding-flow.js";
export { recordProject } from "./record-project.js";
