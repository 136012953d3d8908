// The sample tool: a function the model may call and this page answers itself.

export const WEATHER_DECLARATION = {
  name: "get_weather",
  description: "Get the current weather forecast for a city.",
  parameters: {
    type: "OBJECT",
    properties: { city: { type: "STRING", description: "The city, e.g. Paris" } },
    required: ["city"],
  },
};

const CONDITIONS = ["sunny", "partly cloudy", "light rain", "overcast", "windy", "clear skies"];

/** A made-up but stable forecast: the same city always gets the same weather. */
export function cannedForecast(city) {
  const name = String(city || "somewhere").trim() || "somewhere";
  let hash = 0;
  for (const ch of name.toLowerCase()) hash = (hash * 31 + ch.codePointAt(0)) >>> 0;
  return {
    city: name,
    forecast: CONDITIONS[hash % CONDITIONS.length],
    temperatureC: 8 + (hash % 20),
    humidityPercent: 40 + (hash % 45),
  };
}

/** The page's answer to one function call: the `response` of a FunctionResponse. */
export function answerCall(call) {
  if (call.name === WEATHER_DECLARATION.name) return cannedForecast(call.args?.city);
  return { error: `this page has no function named ${call.name}` };
}
