/* The demo storefront's own code: products, the cart, zoom and the size guide.
   Behaviour capture and decisions come from /sdk/microtune.js (docs/sdk.md). */
(function (w, d) {
  "use strict";
  var PRODUCTS = [
    { id: "linen-shirt", name: "Linen shirt", price: 59.9, colour: "#c9b79c", sizes: true },
    { id: "denim-jacket", name: "Denim jacket", price: 89.0, colour: "#4a6fa5", sizes: true },
    { id: "wool-scarf", name: "Wool scarf", price: 34.5, colour: "#a33b3b", sizes: false },
    { id: "canvas-sneakers", name: "Canvas sneakers", price: 64.0, colour: "#e8e4da", sizes: true },
    { id: "leather-belt", name: "Leather belt", price: 42.0, colour: "#6b4226", sizes: false },
    { id: "rain-coat", name: "Rain coat", price: 129.0, colour: "#3f6e4e", sizes: true }
  ];
  function byId(id) { for (var i = 0; i < PRODUCTS.length; i++) if (PRODUCTS[i].id === id) return PRODUCTS[i]; return null; }
  function load(k, dflt) { try { return JSON.parse(w.localStorage.getItem(k)) || dflt; } catch (e) { return dflt; } }
  function keep(k, v) { w.localStorage.setItem(k, JSON.stringify(v)); }
  function money(x) { return x.toFixed(2); }
  function picture(p, big) {
    var s = big ? 360 : 200;
    return '<svg viewBox="0 0 100 100" width="' + s + '" height="' + s + '" role="img" aria-label="' + p.name + '">' +
      '<rect width="100" height="100" fill="#f4f1ec"/><path d="M30 20 L45 14 Q50 20 55 14 L70 20 L82 38 L70 44 L70 86 L30 86 L30 44 L18 38 Z" fill="' +
      p.colour + '" stroke="#333" stroke-width="1"/></svg>';
  }
  function cart() { return load("shop:cart", []); }
  function total(items) { var t = 0; for (var i = 0; i < items.length; i++) t += items[i].price; return t; }
  function count() { var el = d.getElementById("cart-count"); if (el) el.textContent = cart().length; }

  function cards(items) {
    return items.map(function (p) {
      return '<a class="card" href="product.html?p=' + p.id + '" data-mt-track="card-' + p.id + '">' + picture(p) +
        '<span class="name">' + p.name + '</span><span class="price" data-mt-track="price-' + p.id + '">' + money(p.price) + ' EUR</span></a>';
    }).join("");
  }
  function list(root) { root.innerHTML = cards(PRODUCTS); }
  function product(root) {
    var p = byId(new URLSearchParams(w.location.search).get("p")) || PRODUCTS[0];
    d.title = p.name + " - microtune demo shop";
    root.innerHTML = '<div class="photo" id="photo" data-mt-zoom="photo-' + p.id + '" title="Click to zoom">' + picture(p, true) + '</div>' +
      '<div class="info"><h1 data-mt-track="title">' + p.name + '</h1>' +
      '<p class="price" id="price" data-mt-track="price">' + money(p.price) + ' EUR</p>' +
      (p.sizes ? '<p><label>Size <select id="size" data-mt-track="size"><option>S</option><option>M</option><option>L</option><option>XL</option></select></label> ' +
        '<button id="size-guide" class="link" data-mt-size-guide="size-guide" data-mt-slot="size-guide">Size guide</button></p>' : '') +
      '<p class="proof" data-mt-slot="social-proof" hidden>Bought <span data-mt-param="count">12</span> times today.</p>' +
      '<button id="add" class="buy" data-mt-cart-add="add-' + p.id + '" data-mt-value="' + p.price + '" data-mt-slot="cta">Add to cart</button>' +
      '<p class="desc" data-mt-track="description">Made to last, cut to fit. Free returns within 30 days.</p></div>' +
      '<section class="more"><h2>You may also like</h2><div class="grid">' +
      cards(PRODUCTS.filter(function (q) { return q !== p; })) + '</div></section>';
    d.getElementById("photo").addEventListener("click", function () { this.classList.toggle("zoomed"); });
    d.getElementById("add").addEventListener("click", function () {
      var c = cart(); c.push({ id: p.id, name: p.name, price: p.price }); keep("shop:cart", c); count();
      this.textContent = "Added (" + c.length + " in cart)";
    });
    var g = d.getElementById("size-guide");
    if (g) g.addEventListener("click", function () { d.getElementById("guide").showModal(); });
  }
  function basket(root) {
    var items = cart();
    root.innerHTML = items.length ? items.map(function (it, i) {
      return '<li>' + it.name + ' <span class="price">' + money(it.price) + ' EUR</span> <button class="link" data-i="' + i +
        '" data-mt-cart-remove="remove-' + it.id + '" data-mt-value="' + it.price + '">Remove</button></li>';
    }).join("") + '<li class="total">Total <b>' + money(total(items)) + ' EUR</b></li>' : "<li>Your cart is empty.</li>";
    root.onclick = function (ev) {
      var i = ev.target.getAttribute("data-i");
      if (i == null) return;
      var c = cart(); c.splice(+i, 1); keep("shop:cart", c); count(); basket(root);
    };
  }
  function checkout(root) {
    var items = cart(), off = load("shop:discount", null), sum = total(items);
    var due = off ? Math.round(sum * (100 - off.percent)) / 100 : sum;  // to the cent, once
    root.innerHTML = '<p>' + items.length + ' items, ' + money(sum) + ' EUR' + (off ? ', ' + off.percent + '% off: <b id="due">' + money(due) + ' EUR</b>' : '') + '</p>';
    if (w.microtune) microtune.track("checkout_start", { cart_value: sum });
    d.getElementById("pay").addEventListener("submit", function (ev) {
      ev.preventDefault();
      if (w.microtune) { microtune.track("purchase", { cart_value: due }); microtune.flush(); }
      keep("shop:cart", []); w.localStorage.removeItem("shop:discount"); count();
      root.innerHTML = '<p id="thanks">Thank you: order placed (a demo, nothing is charged).</p>';
      this.hidden = true;
    });
  }

  // A discount the scorer decided on holds at checkout.
  d.addEventListener("microtune:decision", function (ev) {
    if (ev.detail.action === "show_discount_popup") keep("shop:discount", { percent: ev.detail.params.percent || 10 });
  });
  // The consent banner: the SDK sends nothing until the visitor says yes.
  function banner() {
    var b = d.getElementById("consent");
    if (!b || load("mt:consent", null) !== null) return;
    b.hidden = false;
    b.addEventListener("click", function (ev) {
      var yes = ev.target.id === "accept";
      if (ev.target.tagName !== "BUTTON") return;
      if (w.microtune) microtune.consent(yes);
      b.hidden = true;
    });
  }
  w.addEventListener("DOMContentLoaded", function () {
    var view = d.body.getAttribute("data-view"), root = d.getElementById("view");
    ({ list: list, product: product, cart: basket, checkout: checkout })[view](root);
    count();
    banner();
  });
})(window, document);
