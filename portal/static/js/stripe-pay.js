// Card payment with Stripe.js (the Payment Element); card data goes from the browser to Stripe
// only. The page loads Stripe.js from StripeSettings.js_url first, then this file, and provides:
//   <form id="stripe-pay" data-publishable-key="pk_..." data-client-secret="pi_..._secret_..."
//         data-return-url="https://.../pay/return/<order_no>" data-unavailable="<message>">
//     <div id="stripe-payment-element"></div>
//     <button type="submit">...</button>
//     <p id="stripe-pay-error" role="alert" hidden></p>
//   </form>
// Stripe sends the customer back to data-return-url with ?payment_intent=...&redirect_status=...
(function () {
  "use strict";
  var form = document.getElementById("stripe-pay");
  if (!form) {
    return;
  }
  var message = document.getElementById("stripe-pay-error");
  var button = form.querySelector("button[type=submit]");

  function show(text) {
    message.textContent = text;
    message.hidden = false;
    button.disabled = false;
  }

  if (typeof window.Stripe !== "function") {  // Stripe.js did not load (network, blocker)
    button.disabled = true;
    message.textContent = form.dataset.unavailable;
    message.hidden = false;
    return;
  }
  var stripe = window.Stripe(form.dataset.publishableKey);
  var lang = document.documentElement.lang || "";
  var elements = stripe.elements({
    clientSecret: form.dataset.clientSecret,
    locale: lang.indexOf("zh") === 0 ? "zh" : "en"
  });
  elements.create("payment").mount("#stripe-payment-element");

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    button.disabled = true;
    message.hidden = true;
    stripe.confirmPayment({
      elements: elements,
      confirmParams: { return_url: form.dataset.returnUrl }
    }).then(function (result) {
      // only reached when Stripe did not redirect: a declined card or invalid details
      if (result.error) {
        show(result.error.message || form.dataset.unavailable);
      }
    }, function () {
      show(form.dataset.unavailable);
    });
  });
})();
